"""The pure parts of the O2G status watch, licence pre-flight and continuity record (issue 17)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from streamd.errors import BackOff, TransientError
from streamd.events import SourceGap
from streamd.retry import Fatal, Retry, Wait
from streamd.sources.o2g.continuity import O2GContinuity
from streamd.sources.o2g.licenses import needed, verdict
from streamd.sources.o2g.protocol import O2GRequestError, SessionExpired
from streamd.sources.o2g.status import ServerChanged, ServerStatus, StatusWatch, parse_status, status_decision


def test_parse_status_reads_start_date_primary_and_ha_tolerantly() -> None:
    body = {"startDate": "2026-12-04T10:00:00Z", "ha": True, "primary": "a.example", "pbxs": []}
    assert parse_status(body) == ServerStatus("2026-12-04T10:00:00Z", "a.example", True)
    assert parse_status({"startDate": "", "primary": 7, "ha": "yes"}) == ServerStatus(None, None, False)
    assert parse_status(["not", "an", "object"]) == ServerStatus(None, None, False)


def test_the_watch_reports_a_new_start_date_and_a_new_primary_not_the_first_read() -> None:
    watch = StatusWatch("pbx1")
    assert watch.changed(ServerStatus("t1", "a", True)) is None  # nothing to compare with yet
    assert watch.changed(ServerStatus("t1", "a", True)) is None
    assert watch.changed(ServerStatus("t2", "a", True)) == "O2G restarted (startDate t1 -> t2)"
    assert watch.changed(ServerStatus("t2", "b", True)) == "O2G HA switchover (primary a -> b)"
    assert watch.changed(ServerStatus(None, None, False)) is None  # a field gone detects nothing
    assert watch.changed(ServerStatus("t3", "c", True)) == (
        "O2G restarted (startDate t2 -> t3); O2G HA switchover (primary b -> c)"
    )
    assert watch.changed(ServerStatus("t9", "x", True), "https://secondary") is None  # another server


def test_the_status_job_reads_again_after_a_failed_read_and_hands_the_session_what_ends_it() -> None:
    tomcat_404 = O2GRequestError("o2g pbx1 system status: HTTP 404", status=404, info=None)
    assert isinstance(status_decision(tomcat_404), Retry)  # not refused for good: read again
    assert isinstance(status_decision(TransientError("o2g pbx1 system status: HTTP 503")), Retry)
    assert status_decision(BackOff("o2g pbx1 system status: HTTP 429", 7.0)) == Wait(7.0)
    assert isinstance(status_decision(ServerChanged("o2g pbx1: O2G restarted")), Fatal)  # the session's
    assert isinstance(status_decision(SessionExpired("o2g pbx1: INVALID_SESSION")), Fatal)


def test_a_restart_names_a_pending_loss_and_keeps_its_start() -> None:
    c = O2GContinuity("pbx1")
    c.restarted("O2G restarted (x)")  # never streamed: nothing was missed
    assert c.gap() is None
    c.streaming()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    c.lost("session lost: 403", start)
    c.restarted("O2G restarted (startDate a -> b)")
    gap = c.gap()
    assert gap is not None
    assert isinstance(gap.data, SourceGap)
    assert (gap.data.from_, gap.data.reason) == (start, "O2G restarted (startDate a -> b); session lost: 403")
    c.gap_sent(gap)
    c.streaming()
    c.restarted("O2G HA switchover (primary a -> b)", start)
    assert c.gap() is not None


def test_the_continuity_record_survives_a_daemon_restart_as_one_gap() -> None:
    first = O2GContinuity("pbx1")
    assert first.record() is None  # never streamed: nothing to keep
    first.streaming()
    saved = first.record()
    assert saved is not None
    second = O2GContinuity("pbx1")
    second.resumed(saved)
    assert second.record() == saved  # not streaming yet: the old end is kept
    gap = second.gap()
    assert gap is not None
    assert gap.data.reason == "daemon restart"
    assert gap.data.from_.isoformat() in saved


def test_a_record_written_on_another_host_is_a_restart_or_a_takeover() -> None:
    first = O2GContinuity("pbx1", host="replica-a")
    first.streaming()
    saved = first.record()
    assert saved is not None
    same, other = O2GContinuity("pbx1", host="replica-a"), O2GContinuity("pbx1", host="replica-b")
    same.resumed(saved)
    other.resumed(saved)
    assert (same_gap := same.gap()) is not None
    assert (other_gap := other.gap()) is not None
    assert same_gap.data.reason == "daemon restart"
    assert other_gap.data.reason == "daemon restart or takeover (the stream was last recorded on replica-a)"
    old = O2GContinuity("pbx1", host="replica-b")
    old.resumed('{"complete_until": "2026-01-01T00:00:00+00:00"}')  # a record from before hosts were kept
    assert (old_gap := old.gap()) is not None
    assert old_gap.data.reason == "daemon restart"


@pytest.mark.parametrize(
    "saved", ['{"complete_until": "yesterday"}', "[]", "{", '{"complete_until": "2026-01-01T00:00:00"}']
)
def test_an_unreadable_record_is_ignored_with_a_warning(saved: str, caplog: pytest.LogCaptureFixture) -> None:
    c = O2GContinuity("pbx1")
    with caplog.at_level(logging.WARNING, logger="streamd.sources.o2g"):
        c.resumed(saved)
    assert c.gap() is None
    assert "ignoring" in caplog.text


def test_needed_licences_are_asked_once_each() -> None:
    assert needed(["telephony", "agent", "pilot", "system"]) == [
        "ROXE_API_TEL_ADVANCED",
        "ROXE_API_CONTACTCENTER_AGENT",
        "api-tel-f",
        "ROXE_API_CONTACTCENTER_SVCS",
    ]


def test_the_verdict_names_missing_unknown_and_covered_packages() -> None:
    installed: dict[str, bool | None] = {"ROXE_API_TEL_ADVANCED": True, "api-tel-f": False}
    installed["ROXE_API_CONTACTCENTER_SVCS"] = False
    level, line = verdict(["telephony", "pilot", "rti", "pbxManagement"], installed)
    assert level == logging.WARNING
    assert line == (
        "this server's licences will not deliver the events of pilot, rti (none of"
        " ROXE_API_CONTACTCENTER_SVCS / api-tel-f is installed); not checked: pbxManagement"
    )
    level, line = verdict(["telephony", "agent"], {"ROXE_API_CONTACTCENTER_AGENT": True})
    assert (level, line) == (logging.DEBUG, "the licences cover telephony, agent")
    level, line = verdict(["pilot"], {"ROXE_API_CONTACTCENTER_SVCS": None, "api-tel-f": False})
    assert (level, line) == (logging.DEBUG, "the licences cover no checked package; not checked: pilot")
