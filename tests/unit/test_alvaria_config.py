"""The ``kind: alvaria`` config block: scopes per query, defaults, secrets, per-query intervals."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from streamd.sources.alvaria.config import AlvariaSourceConfig

BASE: dict[str, Any] = {
    "kind": "alvaria",
    "name": "cloud1",
    "base_url": "https://acme.via.aspect-cloud.net/via/v2/organizations/acme/",
    "token_url": "https://myaspect.eu.id.aspect-cloud.net/tokenservice/oauth2/access_token",
    "client_id": "streamd",
    "client_secret": "hunter2",
    "api_key": "key-1",
}


def config(**kw: Any) -> AlvariaSourceConfig:
    return AlvariaSourceConfig.model_validate(BASE | kw)


def test_minimal_config_polls_presence_org_wide() -> None:
    c = config()
    assert c.enabled_queries() == ("presence",)
    assert c.base_url.endswith("/organizations/acme")  # trailing slash dropped
    assert (c.interval, c.refresh_every, c.scope) == (5.0, 300.0, "reportingapi")


def test_queries_default_to_the_configured_scopes() -> None:
    c = config(team_ids=["t1"], work_type_ids=["w1"], contact_lists=["L"])
    assert c.enabled_queries() == (
        "listActivity",
        "teamActivity",
        "userActivity",
        "channelActivity",
        "presence",
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("userActivity", "team_ids"),
        ("teamActivity", "team_ids"),
        ("channelActivity", "work_type_ids"),
        ("listActivity", "contact_lists"),
    ],
)
def test_a_query_without_its_scope_is_an_error(query: str, field: str) -> None:
    with pytest.raises(ValidationError, match=f"{query} needs at least one entry in {field}"):
        config(queries=[query])


def test_unknown_query_and_unknown_field_are_errors() -> None:
    with pytest.raises(ValidationError):
        config(queries=["agentActivity"])
    with pytest.raises(ValidationError):
        config(intervall="5s")
    with pytest.raises(ValidationError, match="queries is empty"):
        config(queries=[])
    with pytest.raises(ValidationError, match="twice"):
        config(queries=["presence", "presence"])


def test_base_url_must_be_an_organisation_root() -> None:
    with pytest.raises(ValidationError, match="organizations"):
        config(base_url="https://acme.via.aspect-cloud.net/via/v2")


def test_per_query_interval_and_timeout() -> None:
    c = config(team_ids=["t"], interval="5s", intervals={"teamActivity": "30s"}, refresh_every="2m")
    assert (c.interval_of("teamActivity"), c.interval_of("userActivity")) == (30.0, 5.0)
    assert c.timeout_of("userActivity") == pytest.approx(4.0)  # below the interval by default
    assert config(timeout="2s").timeout_of("presence") == 2.0
    assert c.refresh_every == 120.0


def test_secrets_stay_out_of_repr_and_dumps() -> None:
    c = config()
    assert "hunter2" not in repr(c)
    assert "key-1" not in repr(c)
    assert "hunter2" not in c.model_dump_json()


def test_state_map_uses_canonical_states() -> None:
    assert config(state_map={"park": "available"}).state_map["park"].value == "available"
    with pytest.raises(ValidationError):
        config(state_map={"park": "napping"})


def test_scopes_are_polled_a_few_at_a_time_each_within_the_timeout() -> None:
    c = config(team_ids=["t1"], interval="10s")
    assert (c.scope_concurrency, c.timeout_of("userActivity")) == (4, 8.0)
    with pytest.raises(ValidationError, match="scope_concurrency"):
        config(scope_concurrency=0)


def test_tls_settings_are_the_shared_ones() -> None:
    c = config(verify_tls=False, ca_file="/etc/ssl/alvaria.pem")
    assert (c.verify_tls, str(c.ca_file)) == (False, "/etc/ssl/alvaria.pem")
    assert config().verify_tls is True


def test_discovered_scope_kinds_enable_their_queries_and_are_read_every_ten_minutes() -> None:
    c = config(discover=["teams", "work_types", "contact_lists"])
    assert c.enabled_queries() == (
        "listActivity",
        "teamActivity",
        "userActivity",
        "channelActivity",
        "presence",
    )
    assert c.discover_every == 600.0
    assert c.discover_paths == {
        "teams": "/provisioning/teams",
        "work_types": "/provisioning/workTypes",
        "contact_lists": "/campaign/lists",
    }
    assert config(queries=["userActivity"], discover=["teams"], discover_every="2m").discover_every == 120.0
    with pytest.raises(ValidationError, match="discover_every"):
        config(queries=["userActivity"], discover=["teams"], discover_every=0)  # a listing every cycle


def test_a_scope_kind_is_listed_or_discovered_not_both() -> None:
    with pytest.raises(ValidationError, match="team_ids lists scopes and discover names teams"):
        config(team_ids=["t1"], discover=["teams"])
    with pytest.raises(ValidationError, match="discover lists a scope kind twice"):
        config(discover=["teams", "teams"])
    with pytest.raises(ValidationError, match="channelActivity needs at least one entry in work_type_ids"):
        config(queries=["channelActivity"], discover=["teams"])
    with pytest.raises(ValidationError):
        config(discover=["users"])  # not a scope kind


def test_presence_discovers_the_worktypes_unless_its_own_are_listed() -> None:
    discovering = config(discover=["work_types"])
    assert discovering.discovered_kind("presence") == "work_types"
    assert discovering.discovered_kind("channelActivity") == "work_types"
    listed = config(discover=["work_types"], presence_work_type_ids=["wt1"])
    assert listed.discovered_kind("presence") is None
    assert config(discover=["teams"], work_type_ids=["wt1"]).discovered_kind("presence") is None
    assert config(team_ids=["t1"]).discovered_kind("userActivity") is None
