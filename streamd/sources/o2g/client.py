"""The O2G REST client: subscriptions and the chunk channel, on top of the session it opens.

:class:`O2GClient` is built in layers: :mod:`.rest` (the HTTP client, its requests, the HA pair
:class:`Servers`, :func:`again`), :mod:`.login` (discovery, login, session, keepalive) and this
module (subscriptions, the chunk channel). The ACD reads built on it (agent states, pilots, pilot
monitoring, RTI) are in :mod:`.acd`. The names other modules import from here are re-exported.

Rules:

1. A non-2xx answer becomes a streamd error through :func:`~.rest.raise_for_status`; O2G saying
   the subscription is gone (its channel answered 4xx) is a :class:`SubscriptionGone`.
2. Once the source has subscribed before, an error answer to a subscription is transient unless
   O2G says otherwise (:mod:`.login` rule 4); a ``REFUSED`` subscription is fatal.
3. One :class:`O2GClient` per session (``async with``, :mod:`.rest` rule 2).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from streamd.errors import FatalError
from streamd.sources.http import httpx_errors
from streamd.sources.o2g.config import selectors_for
from streamd.sources.o2g.login import O2GLogin
from streamd.sources.o2g.protocol import O2GRequestError
from streamd.sources.o2g.rest import (
    API_VERSION,
    DEFAULT_TTL,
    Network,
    Servers,
    SessionInfo,
    Subscription,
    SubscriptionGone,
    again,
    json_or_none,
    raise_for_status,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_TTL",
    "Network",
    "O2GClient",
    "Servers",
    "SessionInfo",
    "Subscription",
    "SubscriptionGone",
    "again",
    "raise_for_status",
]


class O2GClient(O2GLogin):
    """One O2G session's REST calls. Use as ``async with O2GClient(config, servers) as client``."""

    # -- subscriptions -------------------------------------------------------------------

    def subscription_request(
        self, webhook_url: str | None = None, pilots: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """The ``SubscriptionRequest`` body for the configured packages (004 L2385-2410); ``pilots``
        are the discovered pilot numbers (:func:`~streamd.sources.o2g.config.selectors_for`).

        Raises:
            FatalError: no selector is left (only pilot packages, and no pilot was found).
        """
        selectors = selectors_for(self.config, pilots)
        if not selectors:
            raise FatalError(f"o2g {self.config.name}: no pilot found on any node: nothing to subscribe to")
        body: dict[str, Any] = {"filter": {"selectors": selectors}, "version": API_VERSION}
        if webhook_url is not None:
            body["webHookUrl"] = webhook_url
        else:
            body["timeout"] = self.config.subscription_timeout
        return body

    async def subscribe(
        self, webhook_url: str | None = None, pilots: Sequence[str] | None = None
    ) -> Subscription:
        """Create the subscription; anything but ``ACCEPTED`` is fatal for this configuration.

        Raises:
            FatalError: ``REFUSED`` (or another status), or an error O2G marks final.
            TransientError: an error answer after an earlier subscription worked (rule 2).
        """
        request = self.subscription_request(webhook_url, pilots)
        try:
            response = await self.request("POST", self.base_url + "/subscriptions", "subscribe", json=request)
        except O2GRequestError as exc:
            failure = again(exc, self.servers.subscribed_once)
            if failure is exc:
                raise
            raise failure from exc
        body = json_or_none(response.content) or {}
        if body.get("status") != "ACCEPTED" or not body.get("subscriptionId"):
            raise FatalError(
                f"o2g {self.config.name}: subscription {body.get('status', 'UNKNOWN')}: "
                f"{body.get('message') or 'no reason given'}"
            )
        self.servers.subscribed_once = True
        polling = self._pick(body, "privatePollingUrl", "publicPollingUrl")
        return Subscription(id=str(body["subscriptionId"]), polling_url=polling, raw=body)

    async def update_subscription(self) -> None:
        """Replace the filter of the session's subscription (PUT, 004 L2270-2310)."""
        body = {"selectors": selectors_for(self.config)}
        await self.request("PUT", self.base_url + "/subscriptions", "subscription update", json=body)

    async def unsubscribe(self, subscription_id: str) -> None:
        """Delete a subscription (004 L2311-2340)."""
        await self.request("DELETE", f"{self.base_url}/subscriptions/{subscription_id}", "unsubscribe")

    @asynccontextmanager
    async def open_channel(self, polling_url: str) -> AsyncIterator[httpx.Response]:
        """Open the chunk channel (POST, as ALE's SDKs do) and yield the streaming response.

        The read timeout is the idle timeout: no byte for that long raises ``TransientError``
        from the body iterator. A 4xx other than an invalid session means the subscription is gone.

        Raises:
            SessionExpired: the session is gone.
            SubscriptionGone: the subscription is gone.
        """
        timeout = httpx.Timeout(
            self.config.request_timeout,
            connect=self.config.channel_open_timeout,
            read=self.config.idle_timeout,
        )
        request = self.http.build_request(
            "POST", polling_url, timeout=timeout, headers={"Accept": "*/*"}, content=b""
        )
        with httpx_errors():
            response = await self.http.send(request, stream=True)
        try:
            if response.status_code >= 300:
                with httpx_errors():
                    await response.aread()
                _raise_channel_error(response, self.config.name)
            yield response
        finally:
            with anyio.CancelScope(shield=True), httpx_errors():
                await response.aclose()


def _raise_channel_error(response: httpx.Response, name: str) -> None:
    try:
        raise_for_status(response, f"o2g {name} chunk channel")
    except O2GRequestError as exc:  # 404 / NOT_FOUND / other 4xx: the subscription is gone
        raise SubscriptionGone(str(exc)) from exc
