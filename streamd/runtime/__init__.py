"""The runtime layer: one supervisor for everything long-running (components and the stop in
:mod:`.supervisor`, the one retry loop in :mod:`.job`, start-up steps retried until a deadline in
:mod:`.startup`), the one place that unwraps exception groups (:mod:`.failures`), the stop
signals (:mod:`.lifecycle`), and components started and stopped one at a time (:mod:`.switch`)."""

from streamd.runtime.failures import EXPECTED, describe, error_type, leading_error, task_group
from streamd.runtime.job import FAILED_RETRY, Connected, Job, Policy, Session, run_job
from streamd.runtime.lifecycle import STOP_SIGNALS, catch_early_signals, watch_signals
from streamd.runtime.startup import retry_until
from streamd.runtime.supervisor import Grace, Jobs, Supervisor, aggregate
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
