"""A cycle's deadline budgets the token fetch and the scope listing it will need
(streamd.sources.alvaria.query rule 9)."""

from __future__ import annotations

import orjson
import pytest

from streamd.sources.alvaria.client import RateGate
from streamd.sources.alvaria.config import AlvariaSourceConfig
from streamd.sources.alvaria.query import QuerySpec

pytestmark = pytest.mark.anyio

CONFIG = AlvariaSourceConfig.model_validate(
    {
        "kind": "alvaria",
        "name": "s",
        "base_url": "https://acme.example/via/v2/organizations/acme",
        "token_url": "https://id.example/tokenservice/oauth2/access_token",
        "client_id": "c",
        "client_secret": "x",
        "api_key": "k",
        "queries": ["teamActivity"],
        "team_ids": ["t1"],
        "interval": "5s",
        "timeout": "2s",
    }
)
NOW = {"t": 0.0}


class Client:
    """A client whose token lives 100 s (the parts of ``AlvariaClient`` a query uses)."""

    def __init__(self) -> None:
        self.config = CONFIG
        self.gate = RateGate(lambda: NOW["t"])
        self.refresh_at: float | None = None
        self.calls: list[str] = []

    def token_due(self, at: float | None = None) -> bool:
        return self.refresh_at is None or (NOW["t"] if at is None else at) >= self.refresh_at

    async def ensure_token(self) -> None:
        self.calls.append("token")
        self.refresh_at = NOW["t"] + 100

    async def scope_data(self, query: str, scope: str | None) -> bytes:
        self.calls.append(f"{query} {scope}")
        return orjson.dumps({"rows": [{"teamId": "t1", "idleCount": 1}]})


async def test_the_cycle_that_fetches_the_token_gets_a_timeout_more() -> None:
    NOW["t"] = 0.0
    client = Client()
    spec = QuerySpec("teamActivity", config=CONFIG, client=client, clock=lambda: NOW["t"])  # type: ignore[arg-type]
    deadlines: list[float] = []
    spec.retime = deadlines.append
    assert spec.cycle_timeout(steady=True) == 2.5  # one scope: one timeout, plus 10 % of the interval
    assert spec.cycle_timeout() == 4.5  # the first cycle fetches the token too
    cursor = (await spec.fetch({})).cursor
    assert client.calls == ["token", "teamActivity t1"]
    assert deadlines == [2.5]  # the token lasts past the next cycle
    NOW["t"] = 95.0
    cursor = (await spec.fetch(cursor)).cursor
    assert deadlines == [2.5, 4.5]  # the token is refreshed in the next cycle: budgeted
    NOW["t"] = 100.0
    await spec.fetch(cursor)
    assert client.calls[-2:] == ["token", "teamActivity t1"]
    assert deadlines[-1] == 2.5
