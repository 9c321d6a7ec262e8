"""The chunk channel's reopen decisions (:class:`streamd.sources.o2g.chunk.Reopening`), pure: a
clock the test moves, no socket."""

from __future__ import annotations

import pytest

from streamd.errors import BackOff, FatalError, TransientError
from streamd.retry import Fatal, Retry, Wait
from streamd.sources.http import CertificateError
from streamd.sources.o2g.chunk import MAX_EMPTY_CHANNELS, ChannelEnded, ChannelNotOpened, Reopening
from streamd.sources.o2g.client import SubscriptionGone
from streamd.sources.o2g.protocol import SessionExpired
from tests.helpers import Clock


def reopening(window: float = 60.0) -> tuple[Reopening, Clock[float]]:
    clock = Clock(0.0)
    return Reopening(window, clock=clock), clock


def ended(received: int) -> ChannelEnded:
    return ChannelEnded("ended", "connection_lost", received)


def test_a_channel_that_ended_after_data_is_reopened_at_once_however_often() -> None:
    state, _ = reopening()
    for _ in range(10):
        assert state.decide(ended(received=120)) == Wait(0.0)


def test_only_channels_without_a_byte_count_and_data_resets_the_count() -> None:
    state, _ = reopening()
    for _ in range(MAX_EMPTY_CHANNELS - 1):
        assert state.decide(ended(received=0)) == Wait(0.0)
    assert state.decide(ended(received=5)) == Wait(0.0)  # a channel with data in between
    for _ in range(MAX_EMPTY_CHANNELS - 1):
        assert state.decide(ended(received=0)) == Wait(0.0)
    assert state.decide(ended(received=0)) == Fatal()  # three empty ones in a row: give up


def test_a_failed_reopen_backs_off_within_the_window_then_gives_up() -> None:
    state, clock = reopening(window=60.0)
    assert state.decide(ended(received=10)) == Wait(0.0)  # the channel closed at t=0
    clock.now = 30.0
    assert state.decide(ChannelNotOpened("503")) == Retry()
    assert state.decide(ChannelNotOpened("503", delay=300.0)) == Wait(30.0)  # never past the window
    clock.now = 60.0
    assert state.decide(ChannelNotOpened("refused")) == Fatal()
    assert state.expired


def test_the_window_starts_again_once_the_channel_opened() -> None:
    state, clock = reopening(window=60.0)
    assert state.decide(ChannelNotOpened("503")) == Retry()
    clock.now = 50.0
    state.opened()
    assert state.decide(ended(received=0)) == Wait(0.0)  # closed again at t=50
    clock.now = 100.0
    assert state.decide(ChannelNotOpened("503")) == Retry()
    assert not state.expired


@pytest.mark.parametrize(
    "exc",
    [
        SubscriptionGone("404"),
        SessionExpired("INVALID_SESSION"),
        CertificateError("untrusted"),
        FatalError("refused"),
        TransientError("the snapshot failed"),
        BackOff("SERVER_PROBLEM", 300.0),
    ],
)
def test_anything_else_goes_to_the_subscription_job(exc: Exception) -> None:
    state, _ = reopening()
    assert state.decide(exc) == Fatal()
