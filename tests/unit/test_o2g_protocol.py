"""O2GEventDecoder (whole, byte by byte, random splits: h11-style) and REST error classification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.errors import AuthError, BackOff, FatalError, TransientError, VendorProtocolError
from streamd.sources.o2g.protocol import (
    MalformedEvent,
    O2GEventDecoder,
    O2GRequestError,
    RestErrorInfo,
    SessionExpired,
    error_from_response,
    is_channel_information,
    is_keepalive,
    parse_rest_error,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "o2g"

KEEPALIVE = {"eventName": "OnChannelInformation", "text": "keepalive"}
TRICKY = {
    "eventName": "OnCallCreated",
    "loginName": "oxe6011\u00e9",
    "callRef": 'ref "with" {braces} and \\ backslash \\"',
    "text": "caf\u00e9 \u20ac \U0001f600 }}}{{{ \\",
    "nested": {"a": [1, {"b": "}"}], "c": {}},
}
EVENTS: list[dict[str, Any]] = [
    KEEPALIVE,
    TRICKY,
    {"eventName": "OnUserStateModified", "loginName": "oxe1", "state": "BUSY"},
    {},
]


def feed_all(decoder: O2GEventDecoder, parts: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for part in parts:
        out.extend(decoder.feed(part))
    decoder.feed_eof()
    return out


def ndjson(objs: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objs)


def back_to_back(objs: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(o) for o in objs)


def pretty(objs: list[dict[str, Any]]) -> bytes:
    return b"\r\n".join(json.dumps(o, indent=2, ensure_ascii=False).encode() for o in objs) + b"\n"


FRAMINGS = [ndjson, back_to_back, pretty]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_whole_stream_decodes_every_event(framing: Any) -> None:
    assert feed_all(O2GEventDecoder(), [framing(EVENTS)]) == EVENTS


@pytest.mark.parametrize("framing", FRAMINGS)
def test_one_byte_at_a_time(framing: Any) -> None:
    data = framing(EVENTS)
    assert feed_all(O2GEventDecoder(), [data[i : i + 1] for i in range(len(data))]) == EVENTS


def test_split_inside_multibyte_utf8_and_escapes() -> None:
    data = ndjson([TRICKY])
    for cut in range(1, len(data)):
        assert feed_all(O2GEventDecoder(), [data[:cut], data[cut:]]) == [TRICKY]


@settings(max_examples=60, deadline=None)
@given(
    framing=st.sampled_from(FRAMINGS),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    separators=st.sampled_from([b"", b"\n", b" \r\n\t", b",", b"\n\n"]),
)
def test_random_splits_give_the_same_events(framing: Any, cuts: list[int], separators: bytes) -> None:
    data = separators.join(framing([e]) for e in EVENTS)
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert feed_all(O2GEventDecoder(), parts) == EVENTS


@settings(max_examples=40, deadline=None)
@given(objs=st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=3), max_size=4))
def test_arbitrary_string_content_round_trips(objs: list[dict[str, Any]]) -> None:
    data = back_to_back(objs)
    assert feed_all(O2GEventDecoder(), [data[i : i + 3] for i in range(0, len(data), 3)]) == objs


def test_array_wrapped_stream_is_accepted() -> None:
    data = b"[" + b",\n".join(orjson.dumps(e) for e in EVENTS) + b"]\n"
    assert feed_all(O2GEventDecoder(), [data]) == EVENTS


def test_events_come_out_as_soon_as_complete() -> None:
    decoder = O2GEventDecoder()
    assert decoder.feed(b'{"a":1}{"b"') == [{"a": 1}]
    assert decoder.feed(b":2}") == [{"b": 2}]
    assert decoder.feed(b"\n") == []


def test_trailing_partial_event_is_an_error_at_eof() -> None:
    decoder = O2GEventDecoder()
    assert decoder.feed(ndjson([KEEPALIVE]) + b'{"eventName":"OnCall') == [KEEPALIVE]
    with pytest.raises(VendorProtocolError, match="ended inside an event"):
        decoder.feed_eof()


def test_partial_string_at_eof_is_an_error() -> None:
    decoder = O2GEventDecoder()
    assert decoder.feed(b'{"a":"abc\\') == []
    with pytest.raises(VendorProtocolError):
        decoder.feed_eof()


def test_clean_eof_after_whitespace() -> None:
    decoder = O2GEventDecoder()
    assert decoder.feed(ndjson([KEEPALIVE]) + b"\n  \r\n") == [KEEPALIVE]
    decoder.feed_eof()


def test_malformed_object_in_the_middle_does_not_stop_the_stream() -> None:
    bad = b'{"eventName": "OnCallCreated", "loginName": oops}'
    data = ndjson([KEEPALIVE]) + bad + b"\n" + ndjson([TRICKY])
    for parts in ([data], [data[i : i + 1] for i in range(len(data))]):
        out = feed_all(O2GEventDecoder(), parts)
        assert out[0] == KEEPALIVE
        assert isinstance(out[1], MalformedEvent)
        assert out[1].raw == bad
        assert "invalid JSON" in out[1].error
        assert out[2] == TRICKY


def test_invalid_utf8_object_is_malformed() -> None:
    bad = b'{"a": "\xff\xfe"}'
    out = feed_all(O2GEventDecoder(), [bad + b"\n" + ndjson([KEEPALIVE])])
    assert isinstance(out[0], MalformedEvent)
    assert out[0].raw == bad
    assert out[1] == KEEPALIVE


def test_stray_bytes_between_events_are_reported_not_dropped() -> None:
    data = ndjson([KEEPALIVE]) + b"garbage here\n" + ndjson([KEEPALIVE])
    for parts in ([data], [data[i : i + 1] for i in range(len(data))]):
        out = feed_all(O2GEventDecoder(), parts)
        assert out == [
            KEEPALIVE,
            MalformedEvent(b"garbage here", "unexpected bytes between events"),
            KEEPALIVE,
        ]


def test_stray_bytes_after_an_event_are_held_until_the_next_event() -> None:
    decoder = O2GEventDecoder()
    assert decoder.feed(ndjson([KEEPALIVE]) + b"gar") == [KEEPALIVE]
    assert decoder.feed(b"bage") == []
    assert decoder.feed(b'{"a":1}') == [
        MalformedEvent(b"garbage", "unexpected bytes between events"),
        {"a": 1},
    ]


def test_stray_bytes_at_eof_are_an_error() -> None:
    decoder = O2GEventDecoder()
    decoder.feed(b"trailing")
    with pytest.raises(VendorProtocolError):
        decoder.feed_eof()


def test_non_object_lines_are_skipped_through_the_scanner() -> None:
    # a valid JSON line that is not an object: "[" and "]" are separators, the scanner finds {}
    assert feed_all(O2GEventDecoder(), [b'[{"a":1}]\n']) == [{"a": 1}]


def test_oversize_event_raises() -> None:
    decoder = O2GEventDecoder(max_event_size=64)
    with pytest.raises(VendorProtocolError, match="exceeds 64"):
        decoder.feed(b'{"a":"' + b"x" * 100)


def test_oversize_event_raises_when_split() -> None:
    decoder = O2GEventDecoder(max_event_size=64)
    decoder.feed(b'{"a":"' + b"x" * 40)
    with pytest.raises(VendorProtocolError):
        decoder.feed(b"x" * 40)


def test_oversize_complete_ndjson_line_is_a_malformed_event() -> None:
    decoder = O2GEventDecoder(max_event_size=64)
    line = orjson.dumps({"a": "x" * 100})
    (item,) = decoder.feed(line + b"\n")
    assert isinstance(item, MalformedEvent)
    assert (item.raw, item.error_type) == (line, "oversize_event")
    assert decoder.feed(b'{"b":1}\n') == [{"b": 1}]


def test_event_exactly_at_the_limit_passes() -> None:
    line = orjson.dumps({"a": "x" * 50})
    decoder = O2GEventDecoder(max_event_size=len(line))
    assert decoder.feed(line + b"\n") == [{"a": "x" * 50}]
    assert decoder.feed(line) == [{"a": "x" * 50}]


def test_oversize_stray_bytes_raise() -> None:
    decoder = O2GEventDecoder(max_event_size=16)
    decoder.feed(b"x" * 10)
    with pytest.raises(VendorProtocolError, match="stray bytes"):
        decoder.feed(b"y" * 10)


def test_oversize_stray_bytes_in_one_feed_raise() -> None:
    with pytest.raises(VendorProtocolError, match="stray bytes"):
        O2GEventDecoder(max_event_size=16).feed(b"z" * 40)


def test_max_event_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        O2GEventDecoder(max_event_size=0)


def test_buffer_does_not_grow_across_events() -> None:
    decoder = O2GEventDecoder()
    for _ in range(100):
        decoder.feed(ndjson([TRICKY]))
    assert len(decoder._buf) == 0  # white-box: compaction keeps only what is pending


def test_keepalive_detection() -> None:
    assert is_keepalive(KEEPALIVE)
    assert is_keepalive({"eventName": "OnChannelInformation", "text": "keepalive"})
    assert not is_keepalive({"eventName": "OnChannelInformation", "text": "channel established"})
    assert not is_keepalive({"eventName": "OnCallCreated", "text": "keepalive"})
    assert is_channel_information({"eventName": "OnChannelInformation", "text": "channel established"})
    assert not is_channel_information({"eventName": "OnCallCreated"})


def test_seed_keepalive_text_decodes() -> None:
    # exact bytes of 004 L2122, spaces included
    out = feed_all(O2GEventDecoder(), [b'{ "eventName": "OnChannelInformation", "text": "keepalive"}'])
    assert len(out) == 1
    assert is_keepalive(out[0])


# -- REST errors ------------------------------------------------------------------------------------


def seed_error(name: str) -> bytes:
    return orjson.dumps(json.loads((FIXTURES / "rest" / name).read_text())["body"])


def body(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def test_seed_invalid_session_example_means_log_in_again() -> None:
    exc = error_from_response(403, seed_error("error_invalid_session.json"), what="GET /sessions")
    assert type(exc) is SessionExpired
    assert isinstance(exc, TransientError)
    assert "INVALID_SESSION 1001" in str(exc)
    assert str(exc).startswith("GET /sessions: HTTP 403")


def test_seed_server_problem_example_backs_off_slowly() -> None:
    exc = error_from_response(503, seed_error("error_server_problem.json"))
    assert isinstance(exc, BackOff)
    assert exc.delay == 300.0


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "NOT_READY", "code": 1000, "canRetry": True}, TransientError),
        ({"type": "NOT_ALLOWED", "code": 1002, "canRetry": False}, AuthError),
        ({"type": "NOT_SUPPORTED", "code": 1005, "canRetry": False}, FatalError),
        ({"type": "NOT_FOUND", "code": 1003, "canRetry": True}, O2GRequestError),
        ({"type": "NOT_EXPECTED", "code": 1004, "canRetry": True}, O2GRequestError),
        ({"type": "BAD_PARAMETER", "code": 1006, "canRetry": True}, O2GRequestError),
        ({"code": 1001}, SessionExpired),  # type missing: the code decides
        ({"type": "invalid_session"}, SessionExpired),  # case-insensitive
        ({"type": "SOMETHING_NEW", "canRetry": False}, FatalError),
    ],
)
def test_error_type_decides_first(fields: dict[str, Any], expected: type[Exception]) -> None:
    assert type(error_from_response(400, body(**fields))) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, SessionExpired),
        (403, SessionExpired),
        (408, TransientError),
        (500, TransientError),
        (503, TransientError),
        (404, O2GRequestError),
        (400, O2GRequestError),
        (409, O2GRequestError),
    ],
)
def test_status_decides_without_a_usable_body(status: int, expected: type[Exception]) -> None:
    for raw in (b"", b"<html>oops</html>", b"[1,2]", body(type="SOMETHING_NEW", canRetry=True)):
        assert type(error_from_response(status, raw)) is expected


def test_429_backs_off() -> None:
    exc = error_from_response(429, b"")
    assert isinstance(exc, BackOff)
    assert exc.delay > 0


def test_login_rejection_is_an_auth_error() -> None:
    for status, raw in ((401, b""), (403, b""), (400, body(type="NOT_ALLOWED"))):
        exc = error_from_response(status, raw, what="GET /authenticate", login=True)
        assert type(exc) is AuthError
        assert "login and password" in str(exc)


def test_request_error_carries_status_and_info() -> None:
    exc = error_from_response(404, body(type="NOT_FOUND", helpMessage="no such login"))
    assert isinstance(exc, O2GRequestError)
    assert exc.status == 404
    assert exc.info is not None
    assert exc.info.helpMessage == "no such login"
    assert "no such login" in str(exc)


def test_error_line_without_body_shows_the_text() -> None:
    assert str(error_from_response(502, b"Bad gateway\n")) == "O2G request: HTTP 502 Bad gateway"
    assert str(error_from_response(502, b"")) == "O2G request: HTTP 502"


def test_error_line_with_an_empty_info() -> None:
    assert str(error_from_response(500, b"{}")) == "O2G request: HTTP 500"


def test_rest_error_info_accepts_int_and_named_http_status() -> None:
    info = parse_rest_error(body(httpStatus=403, routing={"errorType": "UNKNOWN"}, extra=1))
    assert info == RestErrorInfo.model_validate(
        {"httpStatus": 403, "routing": {"errorType": "UNKNOWN"}, "extra": 1}
    )
    assert parse_rest_error(seed_error("error_invalid_session.json")) is not None
    assert parse_rest_error(b"") is None
    assert parse_rest_error(b"not json") is None
    assert parse_rest_error(b'"a string"') is None
    assert parse_rest_error(body(code="not a number")) is None
