"""Real-time adherence, the pure part: the schedule answer and the judgement (002 L4902-5084)."""

from __future__ import annotations

import orjson

from streamd.events import DEADLETTER_TOPIC, State
from streamd.sources.calabrio.schedule import (
    DEFAULT_RULES,
    Actual,
    AdherenceTracker,
    ScheduledActivity,
    current,
    judge,
    parse_schedule,
)

LUNCH = {"activityType": "lunch", "activityTypeLabel": "Lunch", "activityDetailName": "Special Lunch",
         "serviceQueueId": 6, "startTime": "1000", "endTime": "2000", "paid": True}  # fmt: skip
NIGHT = {"activityType": "IN_SERVICE", "startTime": 3000, "endTime": 9000, "serviceQueueId": None}


def test_the_seeds_shape_is_read_times_as_text_types_lower_case_and_a_midnight_activity_once() -> None:
    body = orjson.dumps(
        [
            {
                "agentId": 1,
                "employeeID": "EMP123",
                "agentTimeZone": "America/Chicago",
                "activitiesByDate": [
                    {"date": "2016-07-22", "scheduledActivities": [NIGHT, LUNCH]},
                    {"date": "2016-07-23", "scheduledActivities": [NIGHT]},  # listed under both days
                ],
            }
        ]
    )
    agents, dead = parse_schedule("wfm", body)
    assert dead == []
    assert agents == {
        "1": [
            ScheduledActivity("lunch", "Lunch", "Special Lunch", "6", 1000, 2000),
            ScheduledActivity("in_service", None, None, None, 3000, 9000),
        ]
    }


def test_an_unusable_activity_or_row_is_a_dead_letter_and_the_rest_is_read() -> None:
    body = orjson.dumps(
        [
            {"agentId": 1, "activitiesByDate": [{"scheduledActivities": [LUNCH, {"activityType": "break"}]}]},
            {"employeeID": "x"},
        ]
    )
    agents, dead = parse_schedule("wfm", body)
    assert [a.type for a in agents["1"]] == ["lunch"]
    assert [e.topic for e in dead] == [DEADLETTER_TOPIC] * 2
    assert [e.data.error_type for e in dead] == ["invalid_payload", "missing_key"]


def test_the_current_activity_and_the_judgement() -> None:
    lunch = ScheduledActivity("lunch", None, None, None, 1000, 2000)
    assert current([lunch], 999) is None
    assert current([lunch], 1000) == lunch
    assert current([lunch], 2000) is None
    assert judge(DEFAULT_RULES, lunch, State.NOT_READY) == "in"
    assert judge(DEFAULT_RULES, lunch, State.BUSY) == "out"
    assert judge(DEFAULT_RULES, None, State.LOGGED_OUT) == "in"
    assert judge(DEFAULT_RULES, None, State.AVAILABLE) == "out"
    coaching = ScheduledActivity("coaching", None, None, None, 0, 1)
    assert judge(DEFAULT_RULES, coaching, State.AVAILABLE) == "unknown"


def test_the_tracker_publishes_a_change_once_and_again_after_an_unpublished_cycle() -> None:
    tracker = AdherenceTracker("wfm", DEFAULT_RULES)
    schedule = {"7": [ScheduledActivity("break", None, None, None, 0, 10_000)]}
    tracker.saw("7", Actual(State.BUSY, "TALK", 500))
    first = tracker.evaluate(schedule, 1000)
    assert [e.data.status for e in first if e.topic == "agent-adherence"] == ["out"]
    assert tracker.evaluate(schedule, 1100) == []  # pending: not twice
    tracker.forget()  # the cycle's emit failed: a new session evaluates again
    assert len(tracker.evaluate(schedule, 1200)) == 2
    tracker.commit()
    assert tracker.evaluate(schedule, 1300) == []
