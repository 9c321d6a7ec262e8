"""WebService Integration profiles: the requests Xima makes when a call finishes (seed 000 L1030-1062).

Rules:

1. A :class:`WebServiceProfile` is what an admin configures: a target URL, the HTTP method, the
   URL parameters (parameter name -> call data field of the finished call) and custom HTTP
   headers. With no triggering criteria every finished call triggers one request.
2. The guide defines no body and no schema: the call data travel as URL parameters only.
3. A request is made once; its answer (status, or 0 when the target could not be reached) is
   logged in :attr:`WebServicePusher.sent` (the last ``kept``: :data:`SENT_KEPT`). The guide says
   nothing of retries.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

CALL_FIELDS = (
    "callId",
    "direction",
    "agent",
    "extension",
    "group",
    "startTime",
    "endTime",
    "talkingDuration",
)
"""The call data fields the simulator's finished calls carry."""
SENT_KEPT = 1000
"""How many requests :attr:`WebServicePusher.sent` keeps (rule 3)."""


@dataclass(frozen=True, slots=True)
class WebServiceProfile:
    """One Web Service Integration Profile (rule 1)."""

    target_url: str
    method: str = "POST"
    parameters: Mapping[str, str] = field(default_factory=lambda: {f: f for f in CALL_FIELDS})
    """URL parameter name -> call data field."""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sent:
    """One request made for a finished call, and its answer (0: no answer)."""

    call_id: str
    status: int


class WebServicePusher:
    """Makes the profiles' requests for finished calls (module rules)."""

    def __init__(self, kept: int = SENT_KEPT) -> None:
        self.profiles: list[WebServiceProfile] = []
        self.sent: deque[Sent] = deque(maxlen=kept)
        """The last ``kept`` requests made, in order."""
        self._client: httpx.AsyncClient | None = None

    async def send(self, call: Mapping[str, str]) -> None:
        """One request per profile for one finished call."""
        for profile in self.profiles:
            params = {name: call.get(source, "") for name, source in profile.parameters.items()}
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=5.0)
            try:
                response = await self._client.request(
                    profile.method, profile.target_url, params=params, headers=dict(profile.headers)
                )
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            self.sent.append(Sent(call.get("callId", ""), status))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
