"""Calabrio contact monitoring, the pure part: the answer and the recording decision (002 L2313-2353)."""

from __future__ import annotations

import pytest

from streamd.sources.calabrio.monitoring import ContactCounts, parse_contacts, recording_status, status_reason
from streamd.sources.calabrio.wire import UnreadableAnswer


def test_the_seeds_example_is_read_with_total_as_text() -> None:
    body = b'{"contacts": {"total": "215", "totalWithAudio": 175, "totalWithVideo": 85}}'
    assert parse_contacts(body) == ContactCounts(215, 175, 85)


def test_video_is_optional() -> None:
    assert parse_contacts(b'{"contacts": {"total": 3, "totalWithAudio": "2"}}') == ContactCounts(3, 2, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"contacts": {"total": "215", "totalWithAudio": 175 "totalWithVideo": 85}}', "not JSON"),
        (b"[]", "no 'contacts' object"),
        (b'{"contacts": "none"}', "no 'contacts' object"),
        (b'{"contacts": {"totalWithAudio": 1}}', "contacts.total is missing or not a count"),
        (b'{"contacts": {"total": 4, "totalWithAudio": -1}}', "contacts.totalWithAudio is missing"),
        (b'{"contacts": {"total": "many", "totalWithAudio": 1}}', "contacts.total is missing"),
    ],
)
def test_an_unusable_answer_is_unreadable_and_says_why(body: bytes, message: str) -> None:
    with pytest.raises(UnreadableAnswer, match=message):
        parse_contacts(body)


@pytest.mark.parametrize(
    ("counts", "status"),
    [
        (ContactCounts(12, 0), "stale"),  # contacts, none recorded
        (ContactCounts(5, 0), "stale"),  # at the threshold
        (ContactCounts(4, 0), "live"),  # too few to tell (a quiet night)
        (ContactCounts(12, 1), "live"),  # one recording is enough
        (ContactCounts(0, 0), "live"),
    ],
)
def test_recording_is_stopped_when_enough_contacts_have_no_audio(counts: ContactCounts, status: str) -> None:
    assert recording_status(counts, 5) == status


def test_the_reasons_carry_the_counts() -> None:
    assert status_reason(ContactCounts(12, 0), "stale") == (
        "recording stopped: 12 contacts in the past 15 minutes, none with an audio recording"
    )
    assert status_reason(ContactCounts(12, 9), "live") == (
        "recording again: 9 of 12 contacts in the past 15 minutes have audio"
    )
