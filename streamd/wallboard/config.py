"""The ``wallboard:`` config section (live state hub, feed API and page).

Rules:

1. The hub's settings (``max_agents``, ``replay``, ...) stay on the server; the display settings
   (:class:`DisplaySettings`: thresholds, stale markers, paging, views, reason labels) are what
   the page reads from ``GET /api/v1/wallboard``, exactly as validated here.
2. Thresholds (:class:`Thresholds`) are keyed by metric name: a canonical name
   (:data:`CANONICAL_METRICS`, in its canonical unit) applies to that metric and to the vendor
   metrics the page reads as it (``waiting_calls``, ``Calls in Queue``, ``queueCount`` are
   ``waiting``); any other name applies to that metric as the vendor sends it. A queue entry
   (``queues``, keyed ``{source}:{queue_id}``, ``{queue_id}`` or the queue's name, first match
   wins) replaces the section's level for the metrics it names.
3. A level is reached when the value is at or above it (``direction: above``) or at or below it
   (``direction: below``); ``alert`` outranks ``warn``. A service-level target colours the
   service level: at or above the target is ok, below it warn, at or below ``target -
   service_level_alert_margin`` alert; a target replaces a ``service_level_percent`` level.
4. Setting ``metrics`` or ``time_in_state`` replaces the defaults (today's alarms: the longest
   wait at 60 s, 15 minutes in any state but available); an empty mapping turns them off.
5. A view's name is what ``?view=`` and ``?rotate=`` use: letters, digits, ``_``, ``-``, ``.``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from streamd.config_types import Duration, StrictModel
from streamd.events import CANONICAL_QUEUE_METRICS, State

CANONICAL_METRICS = CANONICAL_QUEUE_METRICS
"""The canonical queue metrics the page knows, with the unit their thresholds are written in
(one table, in :mod:`streamd.events`)."""

Section = Literal["summary", "queues", "agents"]
SECTIONS: tuple[Section, ...] = ("summary", "queues", "agents")
Collapsed = Literal["logged_out", "unknown"]
ViewName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Name = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class Threshold(StrictModel):
    """The warn and alert levels of one metric (at least one): a level is reached when the value
    is at or above it (direction above) or at or below it (direction below); alert outranks warn."""

    warn: float | None = Field(None, description="Level at which the value is shown as a warning.")
    alert: float | None = Field(None, description="Level at which the value is shown as an alert.")
    direction: Literal["above", "below"] = Field(
        "above", description="above: high values are bad (a wait); below: low values are (a service level)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Threshold:
        if self.warn is None and self.alert is None:
            raise ValueError("set warn, alert or both")
        if self.warn is not None and self.alert is not None:
            if self.direction == "above" and self.alert < self.warn:
                raise ValueError(
                    f"alert ({self.alert:g}) is below warn ({self.warn:g}) with direction: above; "
                    "for a metric that is bad when low, set direction: below"
                )
            if self.direction == "below" and self.alert > self.warn:
                raise ValueError(
                    f"alert ({self.alert:g}) is above warn ({self.warn:g}) with direction: below; "
                    "for a metric that is bad when high, set direction: above"
                )
        return self


class StateThreshold(StrictModel):
    """How long an agent may stay in one state before its timer shows a warning, then an alert."""

    warn: Duration | None = Field(None, description="Time in state shown as a warning.")
    alert: Duration | None = Field(None, description="Time in state shown as an alert.")

    @model_validator(mode="after")
    def _consistent(self) -> StateThreshold:
        if self.warn is None and self.alert is None:
            raise ValueError("set warn, alert or both")
        if self.warn is not None and self.alert is not None and self.alert < self.warn:
            raise ValueError(f"alert ({self.alert:g}s) is shorter than warn ({self.warn:g}s)")
        return self


ServiceLevel = Annotated[float, Field(ge=0, le=100)]


class QueueThresholds(StrictModel):
    """One queue's own levels: a service-level target, and levels replacing the section's per metric."""

    service_level_target: ServiceLevel | None = Field(
        None, description="This queue's service-level target, percent (replaces the section's)."
    )
    metrics: dict[Name, Threshold] = Field(
        default_factory=dict, description="Levels replacing the section's for these metrics."
    )


def _default_time_in_state() -> dict[State, StateThreshold]:
    return {s: StateThreshold(alert=900.0) for s in State if s is not State.AVAILABLE}


class Thresholds(StrictModel):
    """When queue tiles and agent timers show a warning or an alert.

    Metric names are canonical (waiting, longest_wait_seconds, service_level_percent, ... in their
    canonical units; they also apply to the vendor metrics read as them) or a vendor's own.
    """

    metrics: dict[Name, Threshold] = Field(
        default_factory=lambda: {"longest_wait_seconds": Threshold(alert=60.0)},
        description="Levels per metric name, for every queue (setting it replaces the default).",
    )
    service_level_target: ServiceLevel | None = Field(
        None, description="Service-level target of every queue, percent (none: no service-level colours)."
    )
    service_level_alert_margin: float = Field(
        10.0, ge=0, le=100, description="Points below the target at which the service level is an alert."
    )
    queues: dict[Name, QueueThresholds] = Field(
        default_factory=dict,
        description="Per queue, keyed {source}:{queue_id}, {queue_id} or the queue's name (first match wins).",
    )
    time_in_state: dict[State, StateThreshold] = Field(
        default_factory=_default_time_in_state,
        description="Agent time-in-state levels per canonical state (setting it replaces the default: "
        "an alert after 15 minutes in any state but available).",
    )


class View(StrictModel):
    """A saved view, shown by /wallboard?view=NAME or in turn by ?rotate=NAME1,NAME2&every=30s."""

    title: str | None = Field(None, description="Heading shown while this view is on screen.")
    source: list[Name] = Field(default_factory=list, description="Only these sources (none: all).")
    queue: list[Name] = Field(default_factory=list, description="Only these queue ids (none: all).")
    state: list[State] = Field(default_factory=list, description="Only agents in these states (none: all).")
    sections: list[Section] = Field(
        default_factory=lambda: list(SECTIONS),
        min_length=1,
        description="Sections shown (always in this order: summary, queues, agents).",
    )
    expand: list[Collapsed] = Field(
        default_factory=list,
        description="Counters shown as columns of agents (logged_out and unknown are counters by default).",
    )
    metrics: list[Name] = Field(
        default_factory=list, description="Only these metrics on the queue tiles (none: every one known)."
    )

    @model_validator(mode="after")
    def _no_repeats(self) -> View:
        if len(set(self.sections)) != len(self.sections):
            raise ValueError("sections: a section is listed twice")
        return self


class DisplaySettings(StrictModel):
    """The wallboard page's display settings, as GET /api/v1/wallboard serves them."""

    stale_after: Duration = Field(
        120.0,
        gt=0,
        description="A source that sent nothing for this long shows its tiles and agents as stale.",
    )
    stale_after_per_source: dict[Name, Duration] = Field(
        default_factory=dict, description="stale_after of single sources, by source name."
    )
    page_seconds: Duration = Field(
        10.0,
        gt=0,
        description="Agent columns (and tiles) that do not fit the screen turn a page this often; while "
        "views rotate, faster when needed so every page is shown within each view's turn.",
    )
    thresholds: Thresholds = Thresholds()
    views: dict[ViewName, View] = Field(
        default_factory=dict, description="Saved views by name: ?view=NAME, ?rotate=NAME1,NAME2&every=30s."
    )
    reason_labels: dict[Name, dict[Name, str]] = Field(
        default_factory=dict,
        description="Labels of vendor reason codes, by source name, vendor or '*', then code: "
        "{pbx1: {'7': Lunch}}.",
    )

    def stale_after_of(self, source: str) -> float:
        """``stale_after`` of ``source``."""
        return self.stale_after_per_source.get(source, self.stale_after)


class WallboardConfig(DisplaySettings):
    """Live state hub, feed API (``/api/v1/*``) and page (``/wallboard``) on the HTTP port."""

    enabled: bool = Field(True, description="Serve the feed API and page, and read the canonical topics.")
    max_agents: int = Field(100_000, ge=1, description="Agents held; the least recently updated is evicted.")
    max_metrics: int = Field(100_000, ge=1, description="Queue metrics held; the oldest is evicted.")
    replay: int = Field(4096, ge=0, description="Changes kept for clients resuming with Last-Event-ID.")
    client_buffer: int = Field(
        256, ge=1, description="Changes buffered per feed client; a client that falls behind is dropped."
    )
    heartbeat: Duration = Field(10.0, gt=0, description="Keep-alive comment interval on the SSE feed.")
    topic_poll: Duration = Field(
        1.0, gt=0, description="How often to look for canonical topics not yet created."
    )

    def display(self) -> DisplaySettings:
        """The part the page reads (module rule 1)."""
        return DisplaySettings.model_validate(
            {name: getattr(self, name) for name in DisplaySettings.model_fields}
        )
