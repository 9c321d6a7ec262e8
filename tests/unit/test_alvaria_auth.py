"""OAuth2 client credentials as an httpx.Auth: caching, expiry, 401 refresh, token endpoint errors."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx
import orjson
import pytest

from streamd.errors import AuthError, BackOff, StreamdError, TransientError, VendorProtocolError
from streamd.sources.alvaria.auth import AlvariaAuth
from tests.helpers import Clock

TOKEN_URL = "https://myaspect.eu.id.aspect-cloud.net/tokenservice/oauth2/access_token"
DATA_URL = "https://acme.via.aspect-cloud.net/via/v2/organizations/acme/reporting/presence/users/data"


class FakeAlvaria:
    """A MockTransport handler: issues tokens, checks them, scripts failures."""

    def __init__(self, *, expires_in: object = 600) -> None:
        self.expires_in = expires_in
        self.issued = 0
        self.valid: set[str] = set()
        self.requests: list[httpx.Request] = []
        self.seen_auth: list[str] = []
        self.token_answers: list[httpx.Response] = []
        self.data_answers: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.seen_auth.append(request.headers.get("authorization", ""))
        if str(request.url) == TOKEN_URL:
            if self.token_answers:
                return self.token_answers.pop(0)
            self.issued += 1
            token = f"t{self.issued}"
            self.valid = {token}
            body: dict[str, object] = {"access_token": token, "token_type": "Bearer"}
            if self.expires_in is not None:
                body["expires_in"] = self.expires_in
            return httpx.Response(200, json=body)
        if self.data_answers:
            return httpx.Response(self.data_answers.pop(0), json={"error": "Unauthorized"})
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401, json={"error": "Unauthorized"})
        return httpx.Response(200, json={"users": []})

    def data_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url) != TOKEN_URL]


def new_auth(clock: Clock[float] | None = None, **kw: Any) -> AlvariaAuth:
    """An ``AlvariaAuth`` against ``TOKEN_URL`` (override any argument)."""
    args: dict[str, Any] = {"client_id": "streamd", "client_secret": "s3cr:et", "api_key": "key-1"}
    return AlvariaAuth(token_url=TOKEN_URL, clock=clock or Clock(1000.0), **(args | kw))


def make(
    server: FakeAlvaria, clock: Clock[float] | None = None, **kw: Any
) -> tuple[httpx.Client, AlvariaAuth, Callable[[], httpx.Response]]:
    auth = new_auth(clock, **kw)
    client = httpx.Client(transport=httpx.MockTransport(server), auth=auth)
    return client, auth, lambda: client.get(DATA_URL)


def test_first_call_fetches_a_token_with_client_credentials_then_signs_the_request() -> None:
    server = FakeAlvaria()
    _, _, get = make(server)
    assert get().status_code == 200
    token_request, data_request = server.requests
    assert token_request.method == "POST"
    assert parse_qs(token_request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "scope": ["reportingapi"],
    }
    basic = base64.b64decode(token_request.headers["authorization"].removeprefix("Basic ")).decode()
    assert basic == "streamd:s3cr%3Aet"  # RFC 6749 2.3.1: form-urlencoded before Basic
    assert data_request.headers["authorization"] == "Bearer t1"
    assert data_request.headers["x-api-key"] == "key-1"
    assert data_request.headers["accept"] == "application/json"


def test_client_secret_can_go_in_the_form_body() -> None:
    server = FakeAlvaria()
    _, _, get = make(server, client_auth="body")
    get()
    form = parse_qs(server.requests[0].content.decode())
    assert form["client_id"] == ["streamd"]
    assert form["client_secret"] == ["s3cr:et"]
    assert "authorization" not in server.requests[0].headers


@pytest.mark.parametrize(
    ("expires_in", "still_cached", "refresh_after"),
    [
        pytest.param(600, 569, 1, id="margin-before-expiry"),  # 570 s = expires_in - margin
        pytest.param(10, 4.9, 0.1, id="margin-at-most-half-a-short-lifetime"),
    ],
)
def test_token_is_cached_until_shortly_before_expiry(
    expires_in: int, still_cached: float, refresh_after: float
) -> None:
    server, clock = FakeAlvaria(expires_in=expires_in), Clock(1000.0)
    _, auth, get = make(server, clock, margin=30.0)
    get()
    clock.now += still_cached
    get()
    assert server.issued == 1
    clock.now += refresh_after
    get()
    assert server.issued == 2
    assert server.data_requests()[-1].headers["authorization"] == "Bearer t2"
    assert auth.fetches == 2


def test_401_refreshes_the_token_once_and_repeats_the_request() -> None:
    server = FakeAlvaria(expires_in=None)  # no expiry given: keep the token until a 401
    _, _, get = make(server)
    get()
    server.valid = set()  # revoked server-side
    response = get()
    assert response.status_code == 200
    assert server.issued == 2
    assert [a for a in server.seen_auth if a.startswith("Bearer")] == [
        "Bearer t1",
        "Bearer t1",
        "Bearer t2",
    ]


def test_second_401_is_an_auth_error_with_a_clear_line() -> None:
    server = FakeAlvaria()
    _, auth, get = make(server)
    server.data_answers = [401, 401]
    with pytest.raises(AuthError, match=r"HTTP 401 even with a fresh token.*x-api-key"):
        get()
    assert auth.token is None


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(401, json={"error": "invalid_client"}), AuthError),
        (httpx.Response(400, json={"error": "invalid_scope"}), AuthError),
        (httpx.Response(503), TransientError),
        (httpx.Response(429, headers={"Retry-After": "7"}), BackOff),
        (httpx.Response(200, content=b"<html>"), VendorProtocolError),
        (httpx.Response(200, json={"token_type": "Bearer"}), VendorProtocolError),
        (httpx.Response(200, json=["t"]), VendorProtocolError),
    ],
)
def test_token_endpoint_failures_map_to_the_error_tree(
    answer: httpx.Response, error: type[Exception]
) -> None:
    server = FakeAlvaria()
    server.token_answers = [answer]
    _, _, get = make(server)
    with pytest.raises(error) as info:
        get()
    if isinstance(info.value, BackOff):
        assert info.value.delay == 7
    assert "s3cr" not in str(info.value)  # the secret never reaches an error line


def test_rejected_client_names_the_cause() -> None:
    server = FakeAlvaria()
    server.token_answers = [httpx.Response(401, json={"error": "invalid_client"})]
    _, _, get = make(server)
    with pytest.raises(
        AuthError, match=r"rejected client 'streamd' with HTTP 401 \(error 'invalid_client'\)"
    ):
        get()


def test_auth_flow_is_a_pure_generator() -> None:
    auth = new_auth(client_id="c", client_secret="hunter2", api_key="k")
    request = httpx.Request("GET", DATA_URL)
    flow = auth.auth_flow(request)
    token_request = next(flow)
    assert str(token_request.url) == TOKEN_URL
    token_response = httpx.Response(200, content=orjson.dumps({"access_token": "abc", "expires_in": "60"}))
    signed = flow.send(token_response)
    assert signed is request
    assert signed.headers["authorization"] == "Bearer abc"
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))
    assert "hunter2" not in repr(auth)


@pytest.mark.anyio
async def test_works_with_the_async_client() -> None:
    server = FakeAlvaria()
    auth = new_auth(client_id="c", client_secret="s", api_key="k")
    async with httpx.AsyncClient(transport=httpx.MockTransport(server), auth=auth) as client:
        assert (await client.get(DATA_URL)).status_code == 200
        server.valid = set()
        assert (await client.get(DATA_URL)).status_code == 200
    assert server.issued == 2


class SlowTokens(FakeAlvaria):
    """A FakeAlvaria whose token endpoint takes a moment (as a real one does), so calls overlap."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token_calls = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            self.token_calls += 1
            await anyio.sleep(0.02)
        return self(request)


async def _five_at_once(client: httpx.AsyncClient) -> list[int | BaseException]:
    results: list[int | BaseException] = []

    async def one() -> None:
        try:
            results.append((await client.get(DATA_URL)).status_code)
        except StreamdError as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    return results


def _async_client(server: SlowTokens, auth: AlvariaAuth) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(server.handle), auth=auth)


@pytest.mark.anyio
async def test_concurrent_first_calls_make_one_token_request() -> None:
    server = SlowTokens()
    async with _async_client(server, new_auth()) as client:
        assert await _five_at_once(client) == [200] * 5
    assert server.token_calls == 1
    assert len(server.data_requests()) == 5


@pytest.mark.anyio
async def test_concurrent_calls_at_expiry_make_one_refresh() -> None:
    server = SlowTokens(expires_in=600)
    clock = Clock(1000.0)
    auth = new_auth(clock)
    async with _async_client(server, auth) as client:
        assert (await client.get(DATA_URL)).status_code == 200
        clock.now += 600  # past expiry (minus the margin)
        assert await _five_at_once(client) == [200] * 5
    assert server.token_calls == 2
    assert set(server.seen_auth[-5:]) == {"Bearer t2"}


@pytest.mark.anyio
async def test_concurrent_401s_make_one_refresh() -> None:
    server = SlowTokens(expires_in=None)  # no expiry: only a 401 makes the client refresh
    async with _async_client(server, new_auth()) as client:
        assert (await client.get(DATA_URL)).status_code == 200
        server.valid = set()  # the server revoked t1
        assert await _five_at_once(client) == [200] * 5
    assert server.token_calls == 2  # t1, then one refresh for the five rejected calls
    assert server.issued == 2


@pytest.mark.anyio
async def test_calls_that_waited_for_a_failed_refresh_fail_with_it_and_send_nothing() -> None:
    server = SlowTokens()
    server.token_answers = [httpx.Response(503, json={"code": 42, "message": "token store down"})]
    async with _async_client(server, new_auth()) as client:
        results = await _five_at_once(client)
    assert server.token_calls == 1
    assert server.data_requests() == []
    assert all(isinstance(r, TransientError) for r in results)
    assert all("HTTP 503 (code 42, message 'token store down')" in str(r) for r in results)
