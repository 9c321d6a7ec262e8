"""The Calabrio session auth flow, driven through httpx.MockTransport (no sockets)."""

from __future__ import annotations

import itertools

import httpx
import orjson
import pytest

from streamd.errors import AuthError, VendorProtocolError
from streamd.sources.calabrio.auth import SESSION_COOKIE, CalabrioAuth, Credentials, looks_expired
from streamd.sources.http import check_status

BASE = "https://tenant.example"


class Tenant:
    """A scripted tenant: issues sessions, accepts the live one, can expire it."""

    def __init__(self, *, password: str = "pw", html_when_expired: bool = False) -> None:
        self.password = password
        self.sessions = itertools.count(1)
        self.live: str | None = None
        self.log: list[httpx.Request] = []
        self.html_when_expired = html_when_expired

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append(request)
        if request.url.path == "/api/rest/authorize":
            body = orjson.loads(request.content)
            if body["password"] != self.password:
                return httpx.Response(401, json={"errorMessage": "bad credentials"})
            self.live = f"HZ{next(self.sessions)}"
            return httpx.Response(200, json={"sessionId": self.live, "sessionTimeout": "60"})
        if request.headers.get("cookie") != f"{SESSION_COOKIE}={self.live}":
            if self.html_when_expired:
                return httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"})
            return httpx.Response(401)
        return httpx.Response(200, json=[])


def client(tenant: Tenant, auth: CalabrioAuth) -> httpx.Client:
    return httpx.Client(base_url=BASE, transport=httpx.MockTransport(tenant), auth=auth)


def make_auth(password: str = "pw", **kw: object) -> CalabrioAuth:
    creds = Credentials(username="api@example.com", password=password)
    return CalabrioAuth(creds, f"{BASE}/api/rest/authorize", **kw)  # type: ignore[arg-type]


def test_logs_in_once_and_sends_the_session_cookie_on_every_call() -> None:
    tenant, auth = Tenant(), make_auth()
    with client(tenant, auth) as c:
        assert c.get("/api/rest/scheduling/agent").status_code == 200
        assert c.get("/api/rest/scheduling/agent").status_code == 200
    paths = [r.url.path for r in tenant.log]
    assert paths == ["/api/rest/authorize", "/api/rest/scheduling/agent", "/api/rest/scheduling/agent"]
    login = orjson.loads(tenant.log[0].content)
    assert login["username"] == login["userId"] == "api@example.com"  # the seed disagrees: send both
    assert login["language"] == "en"
    assert all(r.headers["cookie"] == "hazelcast.sessionId=HZ1" for r in tenant.log[1:])


def test_login_field_can_be_username_only() -> None:
    body = Credentials(username="u", password="p", login_field="username", tenant_id="7").body()
    assert body == {"locale": "en", "language": "en", "password": "p", "username": "u", "tenantId": "7"}


def test_expired_session_is_renewed_once_and_the_call_retried() -> None:
    tenant, auth = Tenant(), make_auth()
    with client(tenant, auth) as c:
        c.get("/x")
        tenant.live = "gone"  # the server forgot the session
        response = c.get("/x")
    assert response.status_code == 200
    assert auth.session_id == "HZ2"
    assert auth.authorizations == 2
    assert [r.url.path for r in tenant.log] == [
        "/api/rest/authorize",
        "/x",
        "/x",
        "/api/rest/authorize",
        "/x",
    ]


def test_html_login_page_counts_as_an_expired_session() -> None:
    tenant, auth = Tenant(html_when_expired=True), make_auth()
    with client(tenant, auth) as c:
        c.get("/x")
        tenant.live = "gone"
        assert c.get("/x").headers["content-type"] == "application/json"
    assert auth.authorizations == 2


def test_a_second_rejection_after_renewal_is_returned_and_becomes_auth_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/rest/authorize":
            return httpx.Response(200, json={"sessionId": "HZ"})
        return httpx.Response(403, text="forbidden")

    auth = make_auth()
    with httpx.Client(base_url=BASE, transport=httpx.MockTransport(handler), auth=auth) as c:
        response = c.get("/api/rest/scheduling/agent")
    assert response.status_code == 403
    assert auth.authorizations == 2  # once at start, once to retry: never a loop
    with pytest.raises(AuthError):
        check_status(response, "calabrio GET agent")


def test_rejected_credentials_raise_auth_error_with_one_clear_line() -> None:
    tenant, auth = Tenant(), make_auth(password="wrong")
    with client(tenant, auth) as c, pytest.raises(AuthError) as info:
        c.get("/x")
    message = str(info.value)
    assert "rejected the credentials" in message
    assert "api@example.com" in message
    assert "wrong" not in message
    assert "\n" not in message


def test_idle_session_is_renewed_before_the_call() -> None:
    now = [0.0]
    tenant, auth = Tenant(), make_auth(idle=100.0, clock=lambda: now[0])
    with client(tenant, auth) as c:
        c.get("/x")
        now[0] = 99.0
        c.get("/x")
        assert auth.authorizations == 1
        now[0] = 250.0
        c.get("/x")
    assert auth.authorizations == 2


def test_session_timeout_from_the_response_shortens_the_idle_limit() -> None:
    tenant, auth = Tenant(), make_auth(idle=7200.0)
    with client(tenant, auth) as c:
        c.get("/x")
    assert auth.idle == pytest.approx(60 * 60 * 0.8)


def test_session_id_may_come_from_the_cookie() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/rest/authorize":
            return httpx.Response(200, json={}, headers={"set-cookie": "hazelcast.sessionID=HZC; Path=/"})
        return httpx.Response(200, json=[])

    auth = make_auth()
    with httpx.Client(base_url=BASE, transport=httpx.MockTransport(handler), auth=auth) as c:
        c.get("/x")
    assert auth.session_id == "HZC"


def test_authorize_without_a_session_id_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": 2})

    with (
        httpx.Client(base_url=BASE, transport=httpx.MockTransport(handler), auth=make_auth()) as c,
        pytest.raises(VendorProtocolError),
    ):
        c.get("/x")


def test_logout_request_carries_the_cookie() -> None:
    auth = make_auth()
    assert auth.logout_request() is None
    auth.session_id = "HZ9"
    request = auth.logout_request()
    assert request is not None
    assert request.method == "DELETE"
    assert request.headers["cookie"] == "hazelcast.sessionId=HZ9"


def test_expiry_signals() -> None:
    req = httpx.Request("GET", BASE)
    assert looks_expired(httpx.Response(401, request=req))
    assert looks_expired(httpx.Response(302, headers={"location": "/login"}, request=req))
    assert not looks_expired(httpx.Response(200, json=[], request=req))
    assert not looks_expired(httpx.Response(500, request=req))
