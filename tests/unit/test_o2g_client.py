"""O2G config validation, the auth flow and the client's lifecycle, with httpx.MockTransport (no sockets)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from streamd.errors import AuthError, BackOff, FatalError, TransientError
from streamd.sources.o2g.auth import O2GAuth
from streamd.sources.o2g.client import O2GClient, Servers, SubscriptionGone, again
from streamd.sources.o2g.config import O2GSourceConfig, api_root, selectors_for
from streamd.sources.o2g.protocol import O2GRequestError, SessionExpired, error_from_response

BASE: dict[str, Any] = {"name": "pbx1", "url": "https://o2g.example", "username": "admin", "password": "pw"}


def config(**overrides: Any) -> O2GSourceConfig:
    return O2GSourceConfig.model_validate({**BASE, **overrides})


# -- config ----------------------------------------------------------------------------------


def test_api_root_is_discovered_from_the_server_root_or_taken_as_is() -> None:
    assert api_root("https://o2g.example") == "https://o2g.example/api/rest"
    assert api_root("https://o2g.example/") == "https://o2g.example/api/rest"
    assert api_root("https://o2g.example/api/rest/") == "https://o2g.example/api/rest"


def test_selectors_one_per_package_without_ids_for_system_and_pbx_management() -> None:
    cfg = config(
        packages=["telephony", "system", "pbxManagement", "pilot"],
        package_ids={"pilot": ["60141"]},
        names={"telephony": ["OnCallCreated"]},
    )
    assert selectors_for(cfg) == [
        {"names": ["OnCallCreated"], "ids": ["*"]},
        {"names": ["system"]},
        {"names": ["pbxManagement"]},
        {"names": ["pilot"], "ids": ["60141"]},
    ]


def test_pilot_and_rsi_selectors_get_the_discovered_pilot_numbers_instead_of_the_wildcard() -> None:
    cfg = config(packages=["pilot", "rsi", "agent"])
    assert selectors_for(cfg, ["60141", "60142"]) == [
        {"names": ["pilot"], "ids": ["60141", "60142"]},
        {"names": ["rsi"], "ids": ["60141", "60142"]},
        {"names": ["agent"], "ids": ["*"]},
    ]
    assert selectors_for(cfg, []) == [{"names": ["agent"], "ids": ["*"]}]  # no pilot: no selector
    explicit = config(packages=["pilot", "rsi"], package_ids={"rsi": ["65000"], "pilot": ["60141"]})
    assert selectors_for(explicit, ["60141", "60142"]) == [
        {"names": ["pilot"], "ids": ["60141"]},
        {"names": ["rsi"], "ids": ["65000"]},
    ]


def test_on_server_start_is_accepted_under_system_and_warned_about_in_chunk_mode() -> None:
    cfg = config(packages=["system"], names={"system": ["OnServerStart", "OnCtiLinkDown"]})
    assert selectors_for(cfg) == [{"names": ["OnServerStart", "OnCtiLinkDown"]}]
    assert cfg.warnings() == ["names.system OnServerStart: O2G sends it only to a webhook (004 L8950)"]
    hook = config(
        packages=["system"],
        names={"system": ["OnServerStart"]},
        delivery="webhook",
        webhook_public_url="https://streamd/webhooks/o2g/pbx1",
    )
    assert hook.warnings() == []


@pytest.mark.parametrize(("minutes", "warned"), [(0, False), (2, True), (9, True), (10, False), (60, False)])
def test_subscription_timeouts_the_model_allows_are_accepted_below_ten_with_a_warning(
    minutes: int, warned: bool
) -> None:
    warnings = config(subscription_timeout=minutes).warnings()
    assert bool(warnings) is warned
    if warned:
        assert warnings[0].startswith(f"subscription_timeout {minutes} min: the O2G guide says 10 minutes")


def test_tls_settings_are_the_shared_ones() -> None:
    cfg = config(verify_tls=False, allow_insecure_tls=True, ca_file="/etc/ssl/o2g.pem")
    assert (cfg.verify_tls, str(cfg.ca_file)) == (False, "/etc/ssl/o2g.pem")


def test_verification_off_is_refused_unless_insecure_tls_is_allowed_too() -> None:
    with pytest.raises(ValidationError, match="verify_tls: false also needs allow_insecure_tls: true"):
        config(verify_tls=False)
    assert config(allow_insecure_tls=True).verify_tls is True  # allowing it changes nothing by itself


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"packages": ["voicemail"]}, "packages"),
        ({"names": {"agent": ["OnCallCreated"]}, "packages": ["agent"]}, "not events of agent"),
        ({"admin": False, "ids": ["*"]}, "needs an administrator session"),
        ({"admin": False, "ids": ["oxe1"], "packages": ["rti"]}, "need an administrator session"),
        ({"subscription_timeout": 1}, r"0 \(no timeout\) or 2\.\.60"),
        ({"delivery": "webhook"}, "webhook_public_url is required"),
        ({"webhook_secret": "x"}, "apply only to delivery: webhook"),
        ({"packages": ["agent", "agent"]}, "listed twice"),
        ({"url": "o2g.example"}, "url"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_configs_name_the_problem(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**overrides)


def test_password_never_in_repr() -> None:
    assert "pw" not in repr(config())


# -- auth flow ---------------------------------------------------------------------------------


def test_auth_flow_basic_for_login_then_cookies_from_set_cookie() -> None:
    auth = O2GAuth("admin", "pw")
    login = httpx.Request("GET", "https://o2g/api/rest/authenticate?version=1.0")
    flow = auth.auth_flow(login)
    sent = next(flow)
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(b"admin:pw").decode()
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200, headers={"Set-Cookie": "AlcUserId=tok; Path=/"}, request=login))
    assert auth.token == "tok"

    later = httpx.Request("POST", "https://o2g/api/rest/1.0/sessions")
    sent = next(auth.auth_flow(later))
    assert sent.headers["Cookie"] == "AlcUserId=tok"
    assert "Authorization" not in sent.headers


# -- client lifecycle against MockTransport -------------------------------------------------------


class FakeO2G:
    """Just enough O2G for the client: discovery, login, session, subscribe, keepalive."""

    def __init__(self, password: str = "pw") -> None:
        self.password = password
        self.down: set[str] = set()
        self.not_found: set[str] = set()  # hosts answering Tomcat's 404 (O2G deploying)
        self.calls: list[str] = []
        self.keepalive_status = 204
        self.subscription: dict[str, Any] = {"status": "ACCEPTED", "subscriptionId": "s1"}
        self.updated: Any = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        self.calls.append(f"{request.method} {host}{path}")
        if host in self.down:
            raise httpx.ConnectError("refused", request=request)
        if host in self.not_found:
            return httpx.Response(404, text="<html>HTTP Status 404 - Not Found</html>")
        base = f"https://{host}/api/rest"
        if path == "/api/rest":
            url = f"{base}/authenticate?version=1.0"
            return httpx.Response(
                200, json={"versions": [{"id": "1.0", "internalUrl": url, "publicUrl": url}]}
            )
        if path == "/api/rest/authenticate":
            expected = "Basic " + base64.b64encode(f"admin:{self.password}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return httpx.Response(401, json={"type": "NOT_ALLOWED", "code": 1002})
            body = {"credential": "tok", "internalUrl": f"{base}/1.0/sessions", "expired": "true"}
            return httpx.Response(200, json=body, headers={"Set-Cookie": "AlcUserId=tok; Path=/"})
        assert request.headers.get("Cookie") == "AlcUserId=tok"
        if path == "/api/rest/1.0/sessions":
            return httpx.Response(200, json={"timeToLive": "90", "privateBaseUrl": f"{base}/1.0"})
        if path == "/api/rest/1.0/sessions/keepalive":
            return httpx.Response(self.keepalive_status)
        if path == "/api/rest/1.0/subscriptions" and request.method == "PUT":
            self.updated = orjson.loads(request.content)
            return httpx.Response(204)
        if path == "/api/rest/1.0/subscriptions":
            assert orjson.loads(request.content)["version"] == "1.0"
            return httpx.Response(200, json=self.subscription)
        if path == "/api/rest/1.0/subscriptions/s1" and request.method == "DELETE":
            return httpx.Response(204)
        if path == "/OTEvents":
            return httpx.Response(404, json={"type": "NOT_FOUND", "code": 1003})
        return httpx.Response(500)


def client(fake: FakeO2G, servers: Servers | None = None, **overrides: Any) -> O2GClient:
    cfg = config(secondary_url="https://backup.example", **overrides)
    return O2GClient(cfg, servers or Servers.of(cfg), transport=httpx.MockTransport(fake))


@pytest.mark.anyio
async def test_connect_follows_urls_and_keeps_alive_at_a_third_of_the_string_ttl() -> None:
    fake = FakeO2G()
    async with client(fake) as c:
        info = await c.connect()
        await c.keepalive()
    assert info.base_url == "https://o2g.example/api/rest/1.0"
    assert info.ttl == 90.0
    assert c.keepalive_interval == 30.0
    assert fake.calls[:3] == [
        "GET o2g.example/api/rest",
        "GET o2g.example/api/rest/authenticate",
        "POST o2g.example/api/rest/1.0/sessions",
    ]


@pytest.mark.anyio
async def test_connect_fails_over_to_the_secondary_and_remembers_it() -> None:
    fake = FakeO2G()
    fake.down.add("o2g.example")
    servers = Servers.of(config(secondary_url="https://backup.example"))
    async with client(fake, servers) as c:
        info = await c.connect()
    assert info.server == "https://backup.example/api/rest"
    assert servers.active == 1
    fake.down = {"backup.example"}
    async with client(fake, servers) as c:
        info = await c.connect()
    assert info.server == "https://o2g.example/api/rest"
    fake.down = {"backup.example", "o2g.example"}
    async with client(fake, servers) as c:
        with pytest.raises(TransientError):
            await c.connect()


@pytest.mark.anyio
async def test_bad_credentials_fatal_on_first_login_backoff_after_success() -> None:
    fake = FakeO2G(password="other")
    servers = Servers.of(config())
    async with client(fake, servers) as c:
        with pytest.raises(AuthError, match="check the O2G login and password"):
            await c.connect()
    servers.logged_in_once = True
    async with client(fake, servers) as c:
        with pytest.raises(BackOff):
            await c.connect()


def test_on_reconnect_an_answer_is_transient_unless_o2g_says_it_is_final() -> None:
    tomcat = error_from_response(404, b"<html>HTTP Status 404</html>", what="discovery")
    not_found = error_from_response(404, b'{"type": "NOT_FOUND", "code": 1003, "canRetry": true}')
    final = error_from_response(400, b'{"type": "SOME_NEW_TYPE", "canRetry": false}')
    assert isinstance(tomcat, O2GRequestError)
    assert isinstance(not_found, O2GRequestError)
    assert again(tomcat, reconnecting=False) is tomcat  # the first connection: a wrong url
    assert isinstance(again(tomcat, reconnecting=True), TransientError)
    assert isinstance(again(not_found, reconnecting=True), TransientError)
    assert again(final, reconnecting=True) is final
    refused = AuthError("NOT_ALLOWED")
    assert again(refused, reconnecting=True) is refused


@pytest.mark.anyio
async def test_a_fatal_answer_of_the_primary_still_tries_the_secondary() -> None:
    fake = FakeO2G()
    fake.not_found.add("o2g.example")
    servers = Servers.of(config(secondary_url="https://backup.example"))
    async with client(fake, servers) as c:
        info = await c.connect()
    assert info.server == "https://backup.example/api/rest"
    fake.not_found.add("backup.example")
    async with client(fake, servers) as c:
        with pytest.raises(O2GRequestError, match="discovery: HTTP 404"):
            await c.connect()  # the first connection ever: both 404 is a wrong url, fatal
    servers.subscribed_once = True
    async with client(fake, servers) as c:
        with pytest.raises(TransientError, match="O2G may still be starting"):
            await c.connect()


@pytest.mark.anyio
async def test_keepalive_404_while_o2g_restarts_means_session_lost() -> None:
    fake = FakeO2G()
    fake.keepalive_status = 404
    async with client(fake) as c:
        await c.connect()
        with pytest.raises(SessionExpired):
            await c.keepalive()


@pytest.mark.anyio
async def test_keepalive_403_is_session_expired_and_refused_subscription_fatal() -> None:
    fake = FakeO2G()
    fake.keepalive_status = 403
    fake.subscription = {"status": "REFUSED", "message": "too many users"}
    async with client(fake) as c:
        await c.connect()
        with pytest.raises(SessionExpired):
            await c.keepalive()
        with pytest.raises(FatalError, match="REFUSED: too many users"):
            await c.subscribe()


@pytest.mark.anyio
async def test_channel_404_means_subscription_gone() -> None:
    async with client(FakeO2G()) as c:
        await c.connect()
        with pytest.raises(SubscriptionGone):
            async with c.open_channel("https://o2g.example/OTEvents?subscriptionId=s1"):
                pass


@pytest.mark.anyio
async def test_subscribe_update_and_delete() -> None:
    fake = FakeO2G()
    fake.subscription = {
        "status": "ACCEPTED",
        "subscriptionId": "s1",
        "privatePollingUrl": "https://p/OTEvents",
    }
    async with client(fake, packages=["agent", "system"]) as c:
        await c.connect()
        assert c.subscription_request()["timeout"] == 0  # chunk: no server timeout, keepalive events
        assert "timeout" not in c.subscription_request(webhook_url="https://streamd/hook")
        sub = await c.subscribe()
        await c.update_subscription()
        await c.unsubscribe(sub.id)
    assert sub.polling_url == "https://p/OTEvents"
    assert fake.updated == {"selectors": [{"names": ["agent"], "ids": ["*"]}, {"names": ["system"]}]}
    assert fake.calls[-1] == "DELETE o2g.example/api/rest/1.0/subscriptions/s1"
