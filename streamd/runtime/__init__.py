"""The runtime layer: one supervisor for everything long-running (see :mod:`.supervisor`), and
the one place that unwraps exception groups (:mod:`.failures`)."""

from streamd.runtime.failures import EXPECTED, describe, error_type, leading_error, task_group
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

__all__ = [
    "EXPECTED",
    "FAILED_RETRY",
    "Connected",
    "Grace",
    "Job",
    "Jobs",
    "Policy",
    "Session",
    "Supervisor",
    "aggregate",
    "describe",
    "error_type",
    "leading_error",
    "retry_until",
    "run_job",
    "task_group",
]
