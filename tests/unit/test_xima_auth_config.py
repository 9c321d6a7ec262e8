"""Xima auth flow (pure, httpx.MockTransport), websocket query, config validation, values client."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from streamd.errors import AuthError, FatalError, TransientError, VendorProtocolError
from streamd.sources.xima.auth import BearerAuth, websocket_query
from streamd.sources.xima.client import MetricsRejected, XimaClient
from streamd.sources.xima.config import XimaSourceConfig

BASE = {"kind": "xima", "name": "cr1", "url": "https://cr.example/", "api_key": "k3y"}


def test_bearer_flow_sets_the_header_once_without_io() -> None:
    flow = BearerAuth(SecretStr("k3y")).auth_flow(httpx.Request("GET", "https://cr.example/x"))
    request = next(flow)
    assert request.headers["Authorization"] == "Bearer k3y"
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(401))
    assert "k3y" not in repr(BearerAuth(SecretStr("k3y")))


def test_websocket_query_repeats_id_and_carries_the_key() -> None:
    assert websocket_query(["A", "B c"], SecretStr("k&y")) == "id=A&id=B+c&auth_token=k%26y"


def test_config_defaults_and_websocket_root() -> None:
    cfg = XimaSourceConfig.model_validate({**BASE, "historic": [{"key": "LT39K5C5", "every": "15m"}]})
    assert cfg.url == "https://cr.example"
    assert cfg.ws_root() == "wss://cr.example"
    assert cfg.metrics == "all"
    assert cfg.refresh_every == 300
    assert cfg.historic[0].every == 900
    assert "k3y" not in repr(cfg)
    plain = XimaSourceConfig.model_validate({**BASE, "url": "http://10.0.0.5:9080"})
    assert plain.ws_root() == "ws://10.0.0.5:9080"


@pytest.mark.parametrize(
    "change",
    [
        {"mode": "push"},
        {"url": "cr.example"},
        {"historic": [{"key": "A", "every": "7m"}]},
        {"historic": [{"key": "A"}, {"key": "A"}]},
        {"historic": [{"key": "A", "timezone": "Mars/Olympus"}]},
        {"metrics": "some"},
        {"metrics": []},
        {"typo": 1},
    ],
)
def test_config_rejects(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        XimaSourceConfig.model_validate({**BASE, **change})


@pytest.mark.parametrize("url", ["ws://10.0.0.5:9080", "wss://cr.example"])
def test_a_websocket_address_as_url_is_refused_with_where_it_belongs(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        XimaSourceConfig.model_validate({**BASE, "url": url, "mode": "websocket"})
    (error,) = caught.value.errors()
    assert error["loc"] == ("url",)
    assert "url is the REST root and must start with http:// or https://" in error["msg"]
    assert "put a ws:// / wss:// address in websocket_url" in error["msg"]


def test_a_websocket_address_belongs_in_websocket_url() -> None:
    cfg = XimaSourceConfig.model_validate(
        {**BASE, "websocket_url": "ws://10.0.0.5:9081/", "mode": "websocket"}
    )
    assert (cfg.url, cfg.ws_root()) == ("https://cr.example", "ws://10.0.0.5:9081")


def test_tls_settings_are_the_shared_ones() -> None:
    cfg = XimaSourceConfig.model_validate({**BASE, "verify_tls": False, "ca_file": "/etc/ssl/ca.pem"})
    assert (cfg.verify_tls, str(cfg.ca_file)) == (False, "/etc/ssl/ca.pem")


def client(handler: httpx.MockTransport) -> XimaClient:
    return XimaClient(httpx.AsyncClient(base_url="https://cr.example", transport=handler), "cr1")


@pytest.mark.anyio
@pytest.mark.parametrize("status", [200, 206, 400])
async def test_values_body_is_an_answer_whatever_the_status(status: int) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(status, json={"results": [], "initializing": [{"metricId": "A"}]})

    body = await client(httpx.MockTransport(handler)).metric_values(["A", "B"])
    assert body["initializing"] == [{"metricId": "A"}]
    assert seen == ["https://cr.example/rest/api/v1/realtime/metrics/values?id=A,B"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, b"bad", FatalError),
        (401, b"", AuthError),
        (403, b"", MetricsRejected),
        (404, b"", MetricsRejected),
        (500, b"", TransientError),
        (200, b"not json", VendorProtocolError),
    ],
)
async def test_values_errors(status: int, body: bytes, error: type[Exception]) -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    with pytest.raises(error) as err:
        await client(mock).metric_values(["A", "B"])
    if status in (401, 403, 404):
        assert "A, B" in str(err.value)


def test_one_report_key_twice_needs_an_id_per_entry() -> None:
    twice = [{"key": "LT39K5C5"}, {"key": "LT39K5C5", "parameters": [{"name": "x"}]}]
    with pytest.raises(ValidationError, match="'LT39K5C5' is configured twice: give each entry"):
        XimaSourceConfig.model_validate({**BASE, "historic": twice})
    named = [{**twice[0], "id": "all"}, {**twice[1], "id": "some"}]
    cfg = XimaSourceConfig.model_validate({**BASE, "historic": named})
    assert [r.export_id for r in cfg.historic] == ["all", "some"]
    with pytest.raises(ValidationError, match="'all' is configured twice"):
        XimaSourceConfig.model_validate({**BASE, "historic": [named[0], {**named[1], "id": "all"}]})


def test_a_calls_webhook_alone_is_something_to_do_and_needs_a_secret() -> None:
    cfg = XimaSourceConfig.model_validate({**BASE, "metrics": [], "calls": {"secret": "s3cret"}})
    assert cfg.calls is not None
    assert (cfg.calls.secret_header, cfg.calls.call_id_field) == ("X-Streamd-Secret", "callId")
    assert "s3cret" not in repr(cfg)
    with pytest.raises(ValidationError, match="nothing to do"):
        XimaSourceConfig.model_validate({**BASE, "metrics": []})
    with pytest.raises(ValidationError, match=r"calls\.secret"):
        XimaSourceConfig.model_validate({**BASE, "calls": {}})
    with pytest.raises(ValidationError, match="is empty"):
        XimaSourceConfig.model_validate({**BASE, "calls": {"secret": " "}})
