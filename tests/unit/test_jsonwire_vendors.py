"""Xima, Alvaria and Calabrio decode vendor JSON with :func:`streamd.jsonwire.loads`: an integer
beyond 64 bits arrives exact (as a string) on the event."""

from __future__ import annotations

from streamd.publish.encoding import encode

BIG = "123456789012345678901234567890"


def test_the_xima_websocket_keeps_a_big_integer_exact() -> None:
    from types import SimpleNamespace

    from streamd.sources.xima.models import MetricDescriptor
    from streamd.sources.xima.state import RealtimeState
    from streamd.sources.xima.websocket import RealtimeWebsocket

    state = RealtimeState("cr1")
    state.descriptors = {"KQUEUE": MetricDescriptor(metric_id="KQUEUE", category_type="GROUP")}
    core = SimpleNamespace(source="cr1", state=state, now_ms=lambda: 1_569_946_676_496)
    socket = RealtimeWebsocket(core=core, url_root="wss://x")  # type: ignore[arg-type]
    message = f'{{"key": {{"metricId": "KQUEUE", "categoryValue": "12"}}, "value": {{"type": "COUNT", "lastUpdateTime": 1569946676000, "count": {BIG}}}}}'
    events = socket.on_message(message)
    assert events
    assert events[0].topic != "deadletter"
    assert BIG in encode(events[0], "").value.decode()
    assert "e+29" not in encode(events[0], "").value.decode()


def test_calabrio_answers_keep_a_big_integer_exact() -> None:
    from streamd.sources.calabrio.normalize import json_array

    rows = json_array(f'[{{"agentId": "7", "figure": {BIG}}}]'.encode(), "adherence")
    assert rows == [{"agentId": "7", "figure": BIG}]


def test_alvaria_answers_keep_a_big_integer_exact() -> None:
    from streamd import jsonwire
    from streamd.sources.alvaria import query
    from streamd.sources.alvaria.query import extract_rows, loads

    assert query.loads is jsonwire.loads  # what the poll cycle decodes answers with

    body = f'{{"rows": [{{"userId": "u1", "loggedOnDur": {BIG}}}]}}'.encode()
    rows = extract_rows("userActivity", loads(body))
    assert rows[0]["loggedOnDur"] == BIG
