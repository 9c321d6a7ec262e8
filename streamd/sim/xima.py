"""A Xima / Avaya Call Reporting simulator: a real REST + websocket server on 127.0.0.1.

Rules:

1. It speaks the documented API (seed 000 §2.0, §3.1, §4.0-4.2, the subscription in "5.0"; seed 001):
   ``GET /rest/api/v1/realtime/metrics``, ``GET .../realtime/metrics/values?id=A,B``,
   ``GET /rest/api/v1/agents/mapping``, ``POST /rest/api/v1/historic-data/{key}`` and the websocket
   ``/rest/api/v1/realtime-metric-subscription?id=A&id=B&auth_token=KEY``; Bearer auth everywhere.
2. Every value key starts uninitialized: its first ``init_requests`` requests list it under
   ``initializing`` (HTTP ``initializing_status``: 206 as the breakdown says, or 400 as the error
   table says); later requests return it under ``results``.
3. Data is deterministic (``seed``) and changes only in :meth:`XimaSimulator.step` (tests call it;
   ``tick`` seconds runs it in the background for the demo). Every value type appears.
4. Faults are scripted, never random: :meth:`fail` (next N answers of an endpoint), ``rejected``
   (metric id → 403/404 for any list containing it), ``api_key`` changes (→ 401),
   ``websocket_enabled`` and :meth:`plan_websocket` (per-connection: reject status, close after N
   messages, never answer pings), ``rest_lag`` (REST answers values some versions behind the
   socket, as a REST node that lags the realtime feed does), :meth:`drop_category` (an admin
   removes a category value from a metric's selection), ``reports_without_rows`` (the next
   historic answers lack their ``rows``). :attr:`requests` logs every request.
5. Never-answering pings is done by a uvicorn websocket protocol subclass that drops the automatic
   pong for connections marked silent (uvicorn exposes no public hook for it).
6. ``deviate`` (a share, 0..1) makes that share of the served value entries, websocket messages
   and report rows deviate from the document the way real servers do (issue 13): a number sent
   as a string, an unknown field (in the entry, key, value, row or cell), a value ``type``
   outside the documented list, an unreadable ``lastUpdateTime``, a documented field missing or
   ``null``, the value double-encoded as a JSON string, a row without its ``values`` object (but
   with a field that identifies it), a cell that is not an object. The choices are seeded
   (``seed``, apart from the data's own generator: the data is the same with or without), never
   touch the routing fields (``metricId``, ``categoryValue``), keep the value's
   ``lastUpdateTime`` in every form (so a new version still differs from the previous one) and
   change only what is served, never the stored values. While ``deviate`` is on, every served
   entry and row is logged in :attr:`served` with the JSON paths a tolerant reader must report
   for it (none when it conforms).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

import anyio
import orjson
from anyio.streams.memory import MemoryObjectSendStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from streamd.sim.server import serving
from streamd.tolerant import json_path

Key = tuple[str, str | None]
TZ = timezone(timedelta(hours=-6))  # the seed's examples use -06:00
AGENT_NAMES = [
    "Alice Adams",
    "Bob Brown",
    "Carol Clark",
    "Dave Davis",
    "Eve Evans",
    "Frank Ford",
    "Grace Green",
    "Hank Hill",
    "Ivy Irwin",
    "Jack Jones",
]
STATES = ["Available", "Talking", "Wrap Up", "Not Ready", "Available", "Talking"]


@dataclass(frozen=True, slots=True)
class SimMetric:
    """One API-enabled metric of the simulator."""

    metric_id: str
    name: str
    category_type: str
    value_type: str


METRICS = (
    SimMetric("K0STATE1", "Agent State", "AGENT", "STRING"),
    SimMetric("K0ONCALL", "Agent On Call", "AGENT", "BOOLEAN"),
    SimMetric("K0TALKMS", "Agent Talk Time", "AGENT", "DURATION"),
    SimMetric("K0QUEUED", "Calls in Queue", "GROUP", "COUNT"),
    SimMetric("K0AVGWT1", "Average Wait", "GROUP", "AVERAGE_DURATION"),
    SimMetric("K0LONGWT", "Longest Wait", "NONE", "DURATION"),  # EMPTY while nobody waits
    SimMetric("K0DIRCNT", "Calls by Direction", "CALL_DIRECTION", "COUNT"),
    SimMetric("K0NOTICE", "Site Notice", "NONE", "STRING"),
)


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request the simulator answered."""

    method: str
    path: str
    query: str
    status: int
    websocket: bool = False


@dataclass(frozen=True, slots=True)
class WsPlan:
    """What the next websocket connection does: reject, close after N messages, or never pong."""

    reject: int | None = None
    close_after: int | None = None
    never_pong: bool = False


@dataclass(frozen=True, slots=True)
class Served:
    """One entry or report row the simulator served while ``deviate`` is on (rule 6).

    ``where`` is ``values`` (a REST result), ``ws`` (a socket message) or ``historic`` (a report
    row); ``key`` is the value key, or ``(report key, timeframe start, row index)``; ``kind`` names
    the deviation (``""`` for none) and ``paths`` the JSON paths it must be reported under.
    """

    where: str
    key: tuple[Any, ...]
    kind: str = ""
    paths: tuple[str, ...] = ()


_INT_FIELDS = ("count", "finishedDuration", "durationSum", "numCountingUp", "numCountingDown")
_VALUE_FIELDS = (*_INT_FIELDS, "value")
"""The type-specific fields of the documented values (``type`` and ``lastUpdateTime`` aside)."""
EXTRA_FIELD = "simExtra"
"""The name of the unknown field a deviation adds."""


@dataclass(slots=True)
class _Fault:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class XimaSimulator:
    """``async with XimaSimulator() as sim:`` serves on ``sim.url`` until the block ends."""

    def __init__(
        self,
        *,
        api_key: str = "sim-key",
        agents: int = 4,
        groups: tuple[str, ...] = ("Sales", "Support"),
        seed: int = 1,
        init_requests: int = 1,
        initializing_status: int = 206,
        reports: tuple[str, ...] = ("LT39K5C5",),
        tick: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        now_ms: Callable[[], int] | None = None,
        deviate: float = 0.0,
    ) -> None:
        if not 0.0 <= deviate <= 1.0:
            raise ValueError(f"deviate must be a share between 0 and 1, not {deviate!r}")
        self.api_key = api_key
        self.deviate = deviate
        self.served: list[Served] = []
        self.init_requests = init_requests
        self.initializing_status = initializing_status
        self.reports = set(reports)
        self.tick = tick
        self.host, self.port = host, port
        self.agents = [
            f"{AGENT_NAMES[i % 10]}{f' {i // 10 + 1}' if i >= 10 else ''}({201 + i})" for i in range(agents)
        ]
        self.groups = list(groups)
        self.metrics = {m.metric_id: m for m in METRICS}
        self.rejected: dict[str, int] = {}
        self.websocket_enabled = True
        self.requests: list[LoggedRequest] = []
        self.historic_calls: list[tuple[str, str, str]] = []
        self.values: dict[Key, dict[str, Any]] = {}
        self.rest_lag = 0
        """REST values answers serve each value this many versions behind the current one."""
        self.reports_without_rows = 0
        """The next this many historic answers come without their ``rows`` array."""
        self._versions: dict[Key, deque[dict[str, Any]]] = {}
        self.dropped: set[Key] = set()
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._rng = random.Random(seed)
        self._deviation_rng = random.Random(f"{seed}|deviate")
        self._seen: Counter[Key] = Counter()
        self._faults: dict[str, deque[_Fault]] = {}
        self._plans: deque[WsPlan] = deque()
        self._subscribers: list[tuple[set[str], MemoryObjectSendStream[str]]] = []
        self._silent_ports: set[int] = set()
        self._scopes: set[anyio.CancelScope] = set()
        self._state: dict[str, str] = {}
        self._stack: AsyncExitStack | None = None
        self._ticker_scope = anyio.CancelScope()
        self.url = ""
        self.ws_url = ""
        self._populate()

    # ------------------------------------------------------------------ scripting API

    def fail(self, endpoint: str, status: int, *, times: int = 1, body: Any = None, **headers: str) -> None:
        """The next ``times`` requests to ``endpoint`` get ``status`` (``body`` as JSON when given).

        Endpoints: ``metrics``, ``values``, ``mapping``, ``historic``, ``ws`` (the upgrade).
        """
        queue = self._faults.setdefault(endpoint, deque())
        for _ in range(times):
            queue.append(_Fault(status, body, {k.replace("_", "-"): v for k, v in headers.items()}))

    def plan_websocket(self, *plans: WsPlan) -> None:
        """Script the next websocket connections, one plan each (later ones behave normally)."""
        self._plans.extend(plans)

    def reinitialize(self) -> None:
        """Forget every initialization (as after a long gap without requests)."""
        self._seen.clear()

    def drop_category(self, key: Key) -> None:
        """Remove one category value from its metric (the admin edited the Category Selection):
        it is no longer listed by the metric list, the values answers or the socket."""
        self.dropped.add(key)
        del self.values[key]

    def keys_of(self, metric_id: str) -> list[Key]:
        """The value keys of one metric."""
        return [k for k in self.values if k[0] == metric_id]

    def requests_to(self, path_part: str) -> list[LoggedRequest]:
        """Logged requests whose path contains ``path_part``."""
        return [r for r in self.requests if path_part in r.path]

    def step(self, n: int = 1) -> list[Key]:
        """Advance the simulated contact centre ``n`` times; returns the keys that changed."""
        changed: list[Key] = []
        for _ in range(n):
            changed += self._step_agents() + self._step_groups()
        self._push(changed)
        return changed

    # ------------------------------------------------------------------ data

    def _stamp(self) -> str:
        return datetime.fromtimestamp(self._now_ms() / 1000, TZ).isoformat(timespec="milliseconds")

    def _set(self, key: Key, value: dict[str, Any]) -> None:
        value["lastUpdateTime"] = self._stamp()
        self._versions.setdefault(key, deque(maxlen=8)).append(value)
        if key not in self.dropped:  # the contact centre goes on; the metric no longer shows it
            self.values[key] = value

    def _current(self, key: Key) -> dict[str, Any]:
        return self._versions[key][-1]

    def rest_value(self, key: Key) -> dict[str, Any]:
        """The value a REST answer serves: the current one, or ``rest_lag`` versions older."""
        versions = self._versions.get(key)
        if not self.rest_lag or not versions:
            return self.values[key]
        return versions[max(0, len(versions) - 1 - self.rest_lag)]

    def _populate(self) -> None:
        for agent in self.agents:
            self._state[agent] = "Available"
            self._set(("K0STATE1", agent), {"type": "STRING", "value": "Available"})
            self._set(("K0ONCALL", agent), {"type": "BOOLEAN", "value": False})
            self._set(
                ("K0TALKMS", agent),
                {"type": "DURATION", "finishedDuration": 0, "numCountingUp": 0, "numCountingDown": 0},
            )
        for group in self.groups:
            self._set(("K0QUEUED", group), {"type": "COUNT", "count": 0})
            self._set(
                ("K0AVGWT1", group),
                {
                    "type": "AVERAGE_DURATION",
                    "durationSum": 0,
                    "count": 0,
                    "numCountingUp": 0,
                    "numCountingDown": 0,
                },
            )
        self._set(("K0LONGWT", None), {})
        for direction in ("Inbound", "Outbound", "Internal"):
            self._set(("K0DIRCNT", direction), {"type": "COUNT", "count": 0})
        self._set(("K0NOTICE", None), {"type": "STRING", "value": "All systems normal"})

    def _step_agents(self) -> list[Key]:
        changed: list[Key] = []
        for agent in self.agents:
            if self._rng.random() > 0.5:
                continue
            old, new = self._state[agent], self._rng.choice(STATES)
            if new == old:
                continue
            self._state[agent] = new
            talking = new == "Talking"
            self._set(("K0STATE1", agent), {"type": "STRING", "value": new})
            self._set(("K0ONCALL", agent), {"type": "BOOLEAN", "value": talking})
            talk = self._current(("K0TALKMS", agent))
            finished = talk["finishedDuration"] + (
                self._rng.randint(20_000, 300_000) if old == "Talking" else 0
            )
            self._set(
                ("K0TALKMS", agent),
                {
                    "type": "DURATION",
                    "finishedDuration": finished,
                    "numCountingUp": int(talking),
                    "numCountingDown": 0,
                },
            )
            changed += [("K0STATE1", agent), ("K0ONCALL", agent), ("K0TALKMS", agent)]
            if old == "Talking":
                direction = self._rng.choice(("Inbound", "Outbound", "Internal"))
                count = self._current(("K0DIRCNT", direction))["count"] + 1
                self._set(("K0DIRCNT", direction), {"type": "COUNT", "count": count})
                changed.append(("K0DIRCNT", direction))
        return changed

    def _step_groups(self) -> list[Key]:
        changed: list[Key] = []
        waiting_total = 0
        for group in self.groups:
            waiting = self._rng.randint(0, 4)
            waiting_total += waiting
            if waiting != self._current(("K0QUEUED", group))["count"]:
                self._set(("K0QUEUED", group), {"type": "COUNT", "count": waiting})
                changed.append(("K0QUEUED", group))
            avg = self._current(("K0AVGWT1", group))
            answered = self._rng.randint(0, 2)
            if answered:
                self._set(
                    ("K0AVGWT1", group),
                    {
                        "type": "AVERAGE_DURATION",
                        "durationSum": avg["durationSum"] + answered * self._rng.randint(5_000, 90_000),
                        "count": avg["count"] + answered,
                        "numCountingUp": waiting,
                        "numCountingDown": 0,
                    },
                )
                changed.append(("K0AVGWT1", group))
        longest: dict[str, Any] = {}
        if waiting_total:
            longest = {"type": "DURATION", "finishedDuration": 0, "numCountingUp": 1, "numCountingDown": 0}
        if {k: v for k, v in self._current(("K0LONGWT", None)).items() if k != "lastUpdateTime"} != longest:
            self._set(("K0LONGWT", None), longest)
            changed.append(("K0LONGWT", None))
        return changed

    @staticmethod
    def entry(key: Key, value: dict[str, Any]) -> dict[str, Any]:
        """A ``{key, value}`` entry as the API prints it."""
        k: dict[str, Any] = {"metricId": key[0]}
        if key[1] is not None:
            k["categoryValue"] = key[1]
        return {"key": k, "value": value}

    def _serve(self, where: str, key: Key) -> dict[str, Any]:
        """The entry of ``key`` as served: deviating for a ``deviate`` share of them (rule 6)."""
        entry = self.entry(key, self.rest_value(key) if where == "values" else self.values[key])
        if not self.deviate:
            return entry
        paths: tuple[str, ...] = ()
        kind = ""
        if self._deviation_rng.random() < self.deviate:
            entry = orjson.loads(orjson.dumps(entry))  # a deep copy: the stored value stays as it is
            kind, paths = self._deviate_entry(entry)
        self.served.append(Served(where, key, kind, paths))
        return entry

    def _deviate_entry(self, entry: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        """Make one ``{key, value}`` entry deviate in place; returns the kind and its paths."""
        rng = self._deviation_rng
        value: dict[str, Any] = entry["value"]
        fields = [f for f in _VALUE_FIELDS if f in value]
        numbers = [f for f in fields if not isinstance(value[f], str)]
        kinds = ["unknown_field", "unknown_type", "bad_time", "double_encoded"]
        kinds += ["missing_field", "null_field"] if fields else []
        kinds += ["number_as_string"] if numbers else []
        kind = rng.choice(kinds)
        if kind == "unknown_field":
            where: tuple[str, ...] = rng.choice([(), ("key",), ("value",)])
            container = entry if not where else entry[where[0]]
            container[EXTRA_FIELD] = {"note": "not in the document", "n": rng.randint(0, 99)}
            return kind, (json_path((*where, EXTRA_FIELD)),)
        if kind == "unknown_type":
            value["type"] = "PERCENT"
            return kind, ("$.value.type",)
        if kind == "bad_time":
            when = datetime.fromisoformat(value["lastUpdateTime"])
            value["lastUpdateTime"] = when.strftime("%m/%d/%Y %H:%M:%S.%f")  # unique, not ISO-8601
            return kind, ("$.value.lastUpdateTime",)
        if kind == "double_encoded":
            entry["value"] = orjson.dumps(value).decode()
            return kind, ("$.value",)
        if kind == "number_as_string":
            name = rng.choice(numbers)
            number = value[name]
            value[name] = str(number).lower() if isinstance(number, bool) else str(number)
            return kind, (json_path(("value", name)),)
        name = rng.choice(fields)
        if kind == "missing_field":
            del value[name]
        else:
            value[name] = None
        return kind, (json_path(("value", name)),)

    def _push(self, changed: list[Key]) -> None:
        for key in dict.fromkeys(changed):
            if key in self.dropped or not any(key[0] in ids for ids, _ in self._subscribers):
                continue
            text = orjson.dumps(self._serve("ws", key)).decode()
            for ids, send in self._subscribers:
                if key[0] in ids:
                    with contextlib.suppress(
                        anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
                    ):
                        send.send_nowait(text)

    # ------------------------------------------------------------------ HTTP

    def _log(self, request: Request | WebSocket, status: int, *, websocket: bool = False) -> None:
        method = "WS" if websocket else request.scope.get("method", "GET")
        self.requests.append(LoggedRequest(method, request.url.path, request.url.query, status, websocket))

    def _gate(self, request: Request, endpoint: str) -> Response | None:
        queue = self._faults.get(endpoint)
        if queue:
            fault = queue.popleft()
            if fault.body is None:
                return Response(f"simulated HTTP {fault.status}", fault.status, fault.headers)
            return JSONResponse(fault.body, fault.status, fault.headers)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return Response("The authorization header wasn't valid.", 401)
        return None

    def _answer(self, request: Request, response: Response) -> Response:
        self._log(request, response.status_code)
        return response

    async def _metrics(self, request: Request) -> Response:
        denied = self._gate(request, "metrics")
        if denied is not None:
            return self._answer(request, denied)
        body = [
            {
                "metricId": m.metric_id,
                "metricName": m.name,
                "categoryType": m.category_type,
                "categorySelection": [k[1] for k in self.keys_of(m.metric_id) if k[1] is not None],
            }
            for m in self.metrics.values()
        ]
        return self._answer(request, JSONResponse(body))

    async def _values(self, request: Request) -> Response:
        denied = self._gate(request, "values")
        if denied is not None:
            return self._answer(request, denied)
        ids = [i for raw in request.query_params.getlist("id") for i in raw.split(",") if i]
        if not ids:
            return self._answer(request, Response("missing id", 400))
        for metric_id in ids:
            status = self.rejected.get(metric_id) or (404 if metric_id not in self.metrics else None)
            if status is not None:
                return self._answer(request, Response(f"metric {metric_id} rejected", status))
        results, initializing = [], []
        for metric_id in dict.fromkeys(ids):
            for key in self.keys_of(metric_id):
                self._seen[key] += 1
                if self._seen[key] > self.init_requests:
                    results.append(self._serve("values", key))
                else:
                    initializing.append(self.entry(key, {})["key"])
        status = self.initializing_status if initializing else 200
        body = {"results": results, "initializing": initializing}
        return self._answer(request, JSONResponse(body, status))

    async def _mapping(self, request: Request) -> Response:
        denied = self._gate(request, "mapping")
        if denied is not None:
            return self._answer(request, denied)
        body = {}
        for agent in self.agents:
            name, ext = agent[:-1].split("(")
            first, _, last = name.partition(" ")
            body[(first[0] + last).lower().replace(" ", "")] = f"{name} ({ext})"  # the seed prints a space
        return self._answer(request, JSONResponse(body))

    async def _historic(self, request: Request) -> Response:
        denied = self._gate(request, "historic")
        if denied is not None:
            return self._answer(request, denied)
        key = request.path_params["key"]
        if key not in self.reports:
            return self._answer(request, Response("report not found", 404))
        try:
            body = orjson.loads(await request.body())
            frame = next(p["value"] for p in body["parameters"] if p["valueType"] == "REPORT_TIMEFRAME")
            start, end = str(frame["start"]), str(frame["end"])
        except (orjson.JSONDecodeError, KeyError, TypeError, StopIteration):
            return self._answer(request, Response("Malformed JSON request body", 400))
        self.historic_calls.append((key, start, end))
        report = self.report(key, start, end)
        if self.reports_without_rows:
            self.reports_without_rows -= 1
            del report["rows"]
        if self.deviate:
            self._deviate_rows(key, start, report)
        return self._answer(request, JSONResponse(report))

    def report(self, key: str, start: str, end: str) -> dict[str, Any]:
        """The deterministic 'Agent Talking Summary' report for one timeframe (seed 001 L44-179)."""
        titles = [
            ("Agent", "STRING"),
            ("Inbound Calls", "NUMBER"),
            ("Outbound Calls", "NUMBER"),
            ("Internal Calls", "NUMBER"),
            ("Total Calls", "NUMBER"),
            ("Total Talking", "DURATION"),
            ("Avg Talking", "DURATION"),
        ]
        rows = []
        for agent in self.agents:
            rng = random.Random(f"{key}|{start}|{agent}")
            inbound, outbound, internal = rng.randint(0, 9), rng.randint(0, 9), rng.randint(0, 4)
            total = inbound + outbound + internal
            talking = sum(rng.randint(30_000, 600_000) for _ in range(total))
            cells = [inbound, outbound, internal, total, talking, talking // total if total else 0]
            values: dict[str, Any] = {"0": {"value": agent}}
            for i, cell in enumerate(cells, start=1):
                shown = _hms(cell) if titles[i][1] == "DURATION" else str(cell)
                values[str(i)] = {"value": cell, "formattedValue": shown}
            rows.append({"values": values})
        calls = sum(r["values"]["4"]["value"] for r in rows)
        return {
            "reportId": 48,
            "executionId": str(random.Random(f"{key}|{start}|{len(self.historic_calls)}").getrandbits(128)),
            "title": "Agent Talking Summary",
            "timeframe": {"type": "REPORT_TIMEFRAME", "start": start, "end": end},
            "skin": "Avaya Default",
            "columns": [{"key": str(i), "title": t, "format": f} for i, (t, f) in enumerate(titles)],
            "dataFlag": "INCLUDED",
            "summaryItems": [
                {"title": "Total Calls", "value": calls, "formattedValue": str(calls), "format": "NUMBER"}
            ],
            "rows": rows,
            "charts": {"type": "CHARTS", "rows": []},
        }

    def _deviate_rows(self, key: str, start: str, report: dict[str, Any]) -> None:
        """Make a ``deviate`` share of a report's rows deviate in place (rule 6); log every row."""
        rng = self._deviation_rng
        for index, row in enumerate(report["rows"]):
            paths: tuple[str, ...] = ()
            kind = ""
            if rng.random() < self.deviate:
                kind, paths = self._deviate_row(index, row)
            self.served.append(Served("historic", (key, start, index), kind, paths))

    def _deviate_row(self, index: int, row: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        rng = self._deviation_rng
        cells: dict[str, Any] = row["values"]
        kind = rng.choice(
            ["number_as_string", "unknown_row_field", "unknown_cell_field", "cell_not_object", "no_values"]
        )
        if kind == "unknown_row_field":
            row[EXTRA_FIELD] = {"n": rng.randint(0, 99)}
            return kind, (json_path(("rows", index, EXTRA_FIELD)),)
        if kind == "no_values":  # the row keeps a field that identifies it
            row["agent"] = row.pop("values")["0"]["value"]
            return kind, (json_path(("rows", index, "values")), json_path(("rows", index, "agent")))
        column = rng.choice([c for c in cells if c != "0"])  # a NUMBER or DURATION column
        where = ("rows", index, "values", column)
        if kind == "number_as_string":
            cells[column]["value"] = str(cells[column]["value"])
            return kind, (json_path((*where, "value")),)
        if kind == "unknown_cell_field":
            cells[column][EXTRA_FIELD] = True
            return kind, (json_path((*where, EXTRA_FIELD)),)
        cells[column] = cells[column]["value"]  # cell_not_object
        return kind, (json_path(where),)

    # ------------------------------------------------------------------ websocket

    async def _subscription(self, websocket: WebSocket) -> None:
        plan = self._plans.popleft() if self._plans else WsPlan()
        ids = websocket.query_params.getlist("id")
        status = self._ws_status(plan, websocket, ids)
        self._log(websocket, status, websocket=True)
        if status != 101:
            await websocket.send_denial_response(Response(f"simulated HTTP {status}", status))
            return
        await websocket.accept()
        if plan.never_pong and websocket.client is not None:
            self._silent_ports.add(websocket.client.port)
        send, receive = anyio.create_memory_object_stream[str](1024)
        subscriber = (set(ids), send)
        self._subscribers.append(subscriber)
        try:
            with anyio.CancelScope() as scope:
                self._scopes.add(scope)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._until_disconnect, websocket, tg.cancel_scope)
                    sent = 0
                    if plan.close_after == 0:
                        await websocket.close(1011)
                        tg.cancel_scope.cancel()
                    async for text in receive:
                        await websocket.send_text(text)
                        sent += 1
                        if plan.close_after is not None and sent >= plan.close_after:
                            await websocket.close(1011)
                            tg.cancel_scope.cancel()
        except (OSError, RuntimeError):
            pass  # the client went away mid-send
        finally:
            self._scopes.discard(scope)
            self._subscribers.remove(subscriber)
            send.close()
            receive.close()

    def _ws_status(self, plan: WsPlan, websocket: WebSocket, ids: list[str]) -> int:
        queue = self._faults.get("ws")
        if queue:
            return queue.popleft().status
        if plan.reject is not None:
            return plan.reject
        if not self.websocket_enabled:
            return 404
        if websocket.query_params.get("auth_token") != self.api_key:
            return 401
        if not ids:
            return 400
        if any(i in self.rejected or i not in self.metrics for i in ids):
            return 403  # the websocket says 403 where REST says 404 (000 L996 vs L953)
        return 101

    @staticmethod
    async def _until_disconnect(websocket: WebSocket, scope: anyio.CancelScope) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        scope.cancel()

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> Starlette:
        """The ASGI app (REST routes and the websocket route)."""
        return Starlette(
            routes=[
                Route("/rest/api/v1/realtime/metrics", self._metrics),
                Route("/rest/api/v1/realtime/metrics/values", self._values),
                Route("/rest/api/v1/agents/mapping", self._mapping),
                Route("/rest/api/v1/historic-data/{key}", self._historic, methods=["POST"]),
                WebSocketRoute("/rest/api/v1/realtime-metric-subscription", self._subscription),
            ]
        )

    async def __aenter__(self) -> XimaSimulator:
        async with AsyncExitStack() as stack:
            self.url = await stack.enter_async_context(
                serving(
                    self.app(), host=self.host, port=self.port, ws=self._protocol(), ws_ping_interval=None
                )
            )
            self.ws_url = "ws" + self.url.removeprefix("http")
            tg = await stack.enter_async_context(anyio.create_task_group())
            if self.tick:
                tg.start_soon(self._ticker, self.tick)
            self._stack = stack.pop_all()
        return self

    def _protocol(self) -> type[WebSocketsSansIOProtocol]:
        """uvicorn's websocket protocol, except that connections marked silent never answer a ping."""
        silent = self._silent_ports

        class SimProtocol(WebSocketsSansIOProtocol):
            def handle_ping(self) -> None:
                if self.client is not None and self.client[1] in silent:
                    self.conn.data_to_send()  # drop the automatic pong
                    return
                super().handle_ping()

        return SimProtocol

    async def _ticker(self, every: float) -> None:
        with self._ticker_scope:
            while True:
                await anyio.sleep(every)
                self.step()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._stack is not None
        for scope in list(self._scopes):
            scope.cancel()
        self._ticker_scope.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)


def _hms(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


async def serve_forever(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    agents: int = 8,
    tick: float = 1.0,
    api_key: str = "sim-key",
    deviate: float = 0.0,
    started: Callable[[XimaSimulator], None] | None = None,
) -> None:
    """Run a simulator with changing data until cancelled (for ``streamd demo`` / ``streamd simulate``).

    Args:
        host: interface to bind.
        port: TCP port (0 = ephemeral; read it from the ``started`` callback's ``sim.url``).
        agents: number of simulated agents.
        tick: seconds between data changes.
        api_key: the key the simulator accepts.
        deviate: the share of served entries and rows that deviate from the document (rule 6).
        started: called with the running simulator (e.g. to print its URL).
    """
    async with XimaSimulator(
        host=host, port=port, agents=agents, tick=tick, api_key=api_key, deviate=deviate
    ) as sim:
        if started is not None:
            started(sim)
        await anyio.sleep_forever()


@asynccontextmanager
async def demo_source(agents: int, name: str = "cr1") -> AsyncIterator[dict[str, Any]]:
    """``streamd demo``: start a ticking simulator; yield the ``kind: xima`` source config for it.

    The source subscribes by websocket (falling back to polling), maps the simulator's agent-state
    metric to canonical ``AgentState`` and exports the 15-minute historic report.
    """
    async with XimaSimulator(agents=agents, tick=1.0) as sim:
        yield {
            "kind": "xima",
            "name": name,
            "url": sim.url,
            "api_key": sim.api_key,
            "mode": "websocket",
            "interval": "2s",
            "timeout": "1500ms",
            "metrics": "all",
            "refresh_every": "1m",
            "agent_state_metrics": ["K0STATE1"],
            "historic": [{"key": "LT39K5C5", "every": "15m", "lag": "0s"}],
        }
