"""The runtime layer: one supervisor for everything long-running (see :mod:`.supervisor`), the
one place that unwraps exception groups (:mod:`.failures`), and the stop signals
(:mod:`.lifecycle`), and components started and stopped one at a time (:mod:`.switch`)."""

from streamd.runtime.failures import EXPECTED, describe, error_type, leading_error, task_group
from streamd.runtime.lifecycle import STOP_SIGNALS, catch_early_signals, watch_signals
from streamd.runtime.supervisor import (
    FAILED_RETRY,
    Connected,
    Grace,
    Job,
    Jobs,
    Policy,
    Session,
    Supervisor,
    aggregate,
    retry_until,
    run_job,
)
from streamd.runtime.switch import Switchboard

__all__ = [
    "EXPECTED",
    "FAILED_RETRY",
    "STOP_SIGNALS",
    "Connected",
    "Grace",
    "Job",
    "Jobs",
    "Policy",
    "Session",
    "Supervisor",
    "Switchboard",
    "aggregate",
    "catch_early_signals",
    "describe",
    "error_type",
    "leading_error",
    "retry_until",
    "run_job",
    "task_group",
    "watch_signals",
]
