"""Realistic O2G traffic for the simulator: agents moving through ACD states, calls through pilots.

Rules:

1. Pure and deterministic for a given seed: :meth:`O2GTraffic.tick` returns the events of one
   change and updates :attr:`agents` (the state the REST snapshot resources answer).
2. Every event it produces is valid against the catalog models (a test checks it): agent state
   changes (``OnAgentStateChanged``), a call reaching an agent through a pilot
   (``OnPilotCallCreated`` -> ``Queued`` -> ``Removed`` + ``OnCallCreated``), the call ending
   (``OnCallRemoved``), pauses, withdrawals, log-offs and log-ons.
3. It holds each user's calls in progress: :meth:`telephony_event` is the ``OnTelephonyState``
   a telephony snapshot answers (004 L4555-4558, L5911-6062): every call the user is on, an
   empty ``calls`` list for a user on none.
4. ``full_mix`` (default: the environment variable ``STREAMD_SIM_O2G_MIX=full``, so benches can
   ask a simulator process for it) adds what a real call centre's subscription to every package
   carries besides: an ``OnAgentRtiChanged`` with every agent change, an ``OnPilotRtiChanged``
   and an ``OnQueueRtiChanged`` with every call arriving, an ``OnEventSummaryUpdated`` when a
   call ends unanswered or a user's counters change, and a system event
   (``OnLicenseExpiration``) every :data:`SYSTEM_EVERY` changes. Without it the traffic is the
   agent, pilot and telephony packages only (what most tests count on).
"""

from __future__ import annotations

import os
import random
from typing import Any

_SUBSTATES_AFTER = {"READY": "BUSY", "BUSY": "WRAPUP", "WRAPUP": "READY", "PAUSE": "READY"}
_PHONE_STATE = {"READY": "Idle", "BUSY": "AcdConversation", "WRAPUP": "WrapUp", "PAUSE": "Pause",
                "WITHDRAW": "Idle"}  # fmt: skip
_SERVICE_STATE = {"READY": "Assigned", "BUSY": "Assigned", "WRAPUP": "Assigned", "PAUSE": "Assigned",
                  "WITHDRAW": "Withdrawn"}  # fmt: skip
SYSTEM_EVERY = 5000
"""Changes between two system events in the full mix (rule 4)."""
MIX_ENV = "STREAMD_SIM_O2G_MIX"


class O2GTraffic:
    """The agents' and pilots' state, and the events that change it."""

    def __init__(
        self, *, agents: int, pilots: int, seed: int | None = 0, full_mix: bool | None = None
    ) -> None:
        self._rng = random.Random(seed)
        self._seq = 0
        self.full_mix = os.environ.get(MIX_ENV) == "full" if full_mix is None else full_mix
        self._ticks = 0
        self._mix_rng = random.Random(None if seed is None else seed ^ 0x5EED)  # the core stays as it was
        self._summary: dict[str, dict[str, Any]] = {}  # login -> its event summary counters
        self._calls: dict[str, str] = {}  # login -> the call it is on (not part of the agent's state)
        self.agents: dict[str, dict[str, Any]] = {
            f"oxe{70100 + i}": {"mainState": "LOG_ON", "subState": "READY", "pgNumber": "5001"}
            for i in range(agents)
        }
        self.pilots: dict[str, dict[str, Any]] = {
            str(60141 + i): {
                "number": str(60141 + i),
                "name": f"PILOT_{i + 1}",
                "state": "Opened",
                "detailedState": "OPEN",
                "waitingTime": 0,
                "saturation": False,
                "rules": {"ruleList": [{"ruleNumber": "0", "name": "RULE_0", "active": True}]},
                "possibleTransfer": True,
                "supervisedTransfer": False,
            }
            for i in range(max(1, pilots))
        }

    def tick(self) -> list[dict[str, Any]]:
        """Change one random agent's state; returns the events that change produces, in order
        (with ``full_mix``, the RTI, event summary and system events too: rule 4)."""
        events = self._change()
        if not self.full_mix:
            return events
        self._ticks += 1
        mixed: list[dict[str, Any]] = []
        for event in events:
            mixed.append(event)
            name = event["eventName"]
            if name == "OnAgentStateChanged":
                mixed.append(self.agent_rti_event(event["loginName"]))
            elif name == "OnPilotCallQueued":
                mixed.extend(self._pilot_rti(event["pilot"], event["numberOfQueued"]))
            elif name == "OnCallRemoved" or (name == "OnCallCreated" and self._mix_rng.random() < 0.1):
                mixed.append(self._summary_event(event["loginName"], missed=name == "OnCallCreated"))
        if self._ticks % SYSTEM_EVERY == 0:
            mixed.append({"eventName": "OnLicenseExpiration", "message": "license file expiration",
                          "nbDays": 30 - self._ticks // SYSTEM_EVERY % 30})  # fmt: skip
        return mixed

    def agent_rti_event(self, login: str) -> dict[str, Any]:
        """The ``OnAgentRtiChanged`` of ``login``'s current state (the RTI agent number is its device)."""
        agent = self.agents[login]
        sub = agent.get("subState", "READY") if agent["mainState"] == "LOG_ON" else None
        return {
            "eventName": "OnAgentRtiChanged", "name": login, "number": login[3:], "type": "Normal",
            "serviceState": _SERVICE_STATE.get(sub, "LoggedIn") if sub else "LoggedOut",
            "phoneState": _PHONE_STATE.get(sub, "Idle") if sub else "LoggedOut",
            "currentPG": agent.get("pgNumber"), "nbOfServedACDCalls": self._mix_rng.randint(0, 80),
        }  # fmt: skip

    def _pilot_rti(self, pilot: str, queued: int) -> list[dict[str, Any]]:
        busy = sum(1 for a in self.agents.values() if a.get("subState") == "BUSY")
        return [
            {"eventName": "OnPilotRtiChanged", "number": pilot, "name": self.pilots[pilot]["name"],
             "state": "Opened", "nbOfWaitingCalls": queued, "nbOfCallsInConversation": busy,
             "serviceLevel": self._mix_rng.randint(70, 100), "averageWaitingTime": self._mix_rng.randint(0, 60)},
            {"eventName": "OnQueueRtiChanged", "number": "5001", "name": "QUEUE_5001", "type": "Normal",
             "state": "Opened", "nbOfWaitingCalls": queued, "currentWaitingTime": self._mix_rng.randint(0, 60),
             "longestWaitingTimeInList": self._mix_rng.randint(0, 120)},
        ]  # fmt: skip

    def _summary_event(self, login: str, *, missed: bool) -> dict[str, Any]:
        summary = self._summary.setdefault(login, {"missedCallsNb": 0, "voiceMessagesNb": 0})
        if missed:
            summary["missedCallsNb"] += 1
        elif self._mix_rng.random() < 0.2:
            summary["voiceMessagesNb"] += 1
        waiting = bool(summary["missedCallsNb"] or summary["voiceMessagesNb"])
        return {"eventName": "OnEventSummaryUpdated", "loginName": login,
                "eventSummary": {**summary, "eventWaiting": waiting}}  # fmt: skip

    def _change(self) -> list[dict[str, Any]]:
        login = self._rng.choice(list(self.agents))
        agent = self.agents[login]
        if agent["mainState"] == "LOG_OFF":
            agent.update(mainState="LOG_ON", subState="READY")
            return [self.agent_event(login)]
        sub = agent.get("subState", "READY")
        roll = self._rng.random()
        if sub == "READY" and roll < 0.08:
            agent["subState"] = "PAUSE" if roll < 0.06 else "WITHDRAW"
            if agent["subState"] == "WITHDRAW":
                agent.update(subState="WITHDRAW", withdrawReason=self._rng.randint(1, 3))
            return [self.agent_event(login)]
        if sub == "READY" and roll < 0.1:
            agent.update(mainState="LOG_OFF")
            agent.pop("subState", None)
            return [self.agent_event(login)]
        if sub == "WITHDRAW":
            agent.pop("withdrawReason", None)
        events: list[dict[str, Any]] = []
        following = _SUBSTATES_AFTER.get(sub, "READY")
        if following == "BUSY":
            events.extend(self._call_arrives(login))
        elif sub == "BUSY":
            events.append(self._call_ends(login))
        agent["subState"] = following
        events.append(self.agent_event(login))
        return events

    def agent_event(self, login: str) -> dict[str, Any]:
        """The ``OnAgentStateChanged`` carrying ``login``'s current state."""
        return {"eventName": "OnAgentStateChanged", "loginName": login, "state": dict(self.agents[login])}

    def telephony_event(self, login: str) -> dict[str, Any]:
        """The ``OnTelephonyState`` carrying ``login``'s calls in progress (rule 3)."""
        calls = []
        if (ref := self._calls.get(login)) is not None:
            leg = {"deviceId": login[3:], "state": "ACTIVE", "ringingRemote": False}
            calls.append({"callRef": ref, "legs": [leg]})
        return {"eventName": "OnTelephonyState", "loginName": login,
                "state": {"calls": calls, "deviceCapabilities": []}}  # fmt: skip

    def calls(self) -> dict[str, str]:
        """Each user on a call: login -> its ``callRef``."""
        return dict(self._calls)

    def hold_call(self, login: str, call_ref: str) -> None:
        """Put ``login`` on call ``call_ref`` without an event (a call that began unseen)."""
        self._calls[login] = call_ref

    def drop_call(self, login: str) -> None:
        """End ``login``'s call without an event (a call that ended unseen, e.g. in a gap)."""
        self._calls.pop(login, None)

    def _call_arrives(self, login: str) -> list[dict[str, Any]]:
        self._seq += 1
        call_ref, pilot = str(self._seq), self._rng.choice(list(self.pilots))
        caller = str(self._rng.randint(600000000, 699999999))
        self._calls[login] = call_ref
        removed = "DISTRIBUTED" if self._rng.random() < 0.9 else "OVERFLOWN"
        identity = {"id": {"phoneNumber": caller}, "displayName": caller, "type": {"main": "EXTERNAL"}}
        return [
            {"eventName": "OnPilotCallCreated", "pilot": pilot, "caller": caller, "callRef": call_ref,
             "cause": "ACD_ENTER_DISTRIBUTION", "callData": {"initialCalled": pilot, "anonymous": False}},
            {"eventName": "OnPilotCallQueued", "pilot": pilot, "caller": caller, "queue": "5001",
             "callRef": call_ref, "cause": "CAMP_ON", "numberOfQueued": self._rng.randint(0, 5)},
            {"eventName": "OnPilotCallRemoved", "pilot": pilot, "releasingDevice": pilot,
             "newDestination": login[3:], "callRef": call_ref, "cause": removed},
            {"eventName": "OnCallCreated", "loginName": login, "callRef": call_ref, "cause": "DISTRIBUTED",
             "initiator": caller,
             "legs": [{"deviceId": login[3:], "state": "RINGING_INCOMING", "ringingRemote": False}],
             "participants": [{"participantId": caller, "identity": identity}]},
        ]  # fmt: skip

    def _call_ends(self, login: str) -> dict[str, Any]:
        call_ref = self._calls.pop(login, "0")
        return {"eventName": "OnCallRemoved", "loginName": login, "callRef": call_ref, "cause": "CLEARED"}

    def rti_snapshot(self) -> list[dict[str, Any]]:
        """One ``OnPilotRtiChanged`` per pilot with its current figures (the RTI snapshot)."""
        busy = sum(1 for a in self.agents.values() if a.get("subState") == "BUSY")
        return [
            {"eventName": "OnPilotRtiChanged", "number": number, "name": pilot["name"], "state": "Opened",
             "nbOfWaitingCalls": self._rng.randint(0, 5), "nbOfCallsInConversation": busy,
             "serviceLevel": self._rng.randint(70, 100)}
            for number, pilot in self.pilots.items()
        ]  # fmt: skip
