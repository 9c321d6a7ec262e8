"""Per-scope health of one Alvaria query: a failing scope backs off alone; the query fails only when
no scope answers (streamd.sources.alvaria.scopes), with an injected clock and delays."""

from __future__ import annotations

import itertools
import logging

import pytest

from streamd.errors import BackOff, TransientError
from streamd.sources.alvaria.client import ScopeRefused
from streamd.sources.alvaria.scopes import ScopeHealth
from tests.helpers import Clock


def health(clock: Clock[float], *scopes: str | None) -> ScopeHealth:
    return ScopeHealth(
        source="cloud1",
        query="userActivity",
        scopes=list(scopes),
        clock=clock,
        delays=lambda: (3.0 * 2**n for n in itertools.count()),
    )


def test_a_failing_scope_is_left_out_until_its_own_delay_has_passed() -> None:
    clock = Clock(100.0)
    h = health(clock, "t1", "t2")
    h.answered("t2")
    h.fail("t1", TransientError("HTTP 503"))
    assert h.due() == ["t2"]
    clock.now = 103.0
    assert h.due() == ["t1", "t2"]
    h.fail("t1", TransientError("HTTP 503"))
    clock.now = 108.9
    assert h.due() == ["t2"]  # the second delay is 6 s
    clock.now = 109.0
    assert h.due() == ["t1", "t2"]
    h.answered("t1")
    h.fail("t1", TransientError("HTTP 503"))
    assert h.failing["t1"].not_before == 112.0  # a recovered scope starts again from the first delay


def test_a_server_given_delay_wins_over_the_backoff() -> None:
    clock = Clock(0.0)
    h = health(clock, "t1", "t2")
    h.fail("t1", BackOff("HTTP 503", 20.0))
    assert h.failing["t1"].not_before == 20.0


def test_the_query_fails_only_when_no_scope_answers() -> None:
    clock = Clock(0.0)
    h = health(clock, "t1", "t2")
    h.answered("t2")
    h.fail("t1", TransientError("t1 down"))
    assert h.verdict(["t1"]) is None
    first = TransientError("t2 down")
    h.fail("t2", first)
    assert h.verdict(["t2"]) is first
    assert h.due() == ["t1", "t2"]  # the supervisor's backoff paces a query that is down


def test_a_scope_refused_is_skipped_for_one_cycle_and_403_everywhere_is_told() -> None:
    clock = Clock(0.0)
    h = health(clock, "t1", "t2")
    h.refuse("t1", ScopeRefused("HTTP 404", 404))
    assert h.due() == ["t1", "t2"]
    assert h.verdict([]) is None  # nothing failed: a query of unknown teams is not an outage
    h.refuse("t1", ScopeRefused("HTTP 403", 403))
    assert not h.forbidden_everywhere()
    h.refuse("t2", ScopeRefused("HTTP 403", 403))
    assert h.forbidden_everywhere()


def test_transitions_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="streamd")
    clock = Clock(0.0)
    h = health(clock, "t1")
    for _ in range(3):
        h.fail("t1", TransientError("alvaria GET userActivity t1: HTTP 503 (code 5031)"))
    h.answered("t1")
    levels = [(r.levelname, r.getMessage().split(": ", 1)[1][:40]) for r in caplog.records]
    assert [lvl for lvl, _ in levels] == ["WARNING", "DEBUG", "DEBUG", "INFO"]
    assert "HTTP 503 (code 5031)" in caplog.records[0].getMessage()
    assert caplog.records[-1].getMessage() == "alvaria cloud1 userActivity: t1 answers again"
