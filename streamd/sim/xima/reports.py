"""Historic reports of the Xima simulator (seed 001 L44-179): deterministic, per timeframe and agent."""

from __future__ import annotations

import random
from typing import Any


def hms(ms: int) -> str:
    """``H:MM:SS`` as the reports format durations."""
    seconds = ms // 1000
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def agent_talking_summary(agents: list[str], key: str, start: str, end: str, run: int) -> dict[str, Any]:
    """The deterministic 'Agent Talking Summary' report for one timeframe (seed 001 L44-179);
    ``run`` (the how-many-th report run) only changes ``executionId``."""
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
    for agent in agents:
        rng = random.Random(f"{key}|{start}|{agent}")
        inbound, outbound, internal = rng.randint(0, 9), rng.randint(0, 9), rng.randint(0, 4)
        total = inbound + outbound + internal
        talking = sum(rng.randint(30_000, 600_000) for _ in range(total))
        cells = [inbound, outbound, internal, total, talking, talking // total if total else 0]
        values: dict[str, Any] = {"0": {"value": agent}}
        for i, cell in enumerate(cells, start=1):
            shown = hms(cell) if titles[i][1] == "DURATION" else str(cell)
            values[str(i)] = {"value": cell, "formattedValue": shown}
        rows.append({"values": values})
    calls = sum(r["values"]["4"]["value"] for r in rows)
    return {
        "reportId": 48,
        "executionId": str(random.Random(f"{key}|{start}|{run}").getrandbits(128)),
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
