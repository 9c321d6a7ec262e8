"""One row per figure, for ``python -m bench``'s table: each bench calls :func:`record` next to its
own printout; rows go to the file named by ``BENCH_JSON`` (one JSON object per line) when set."""

from __future__ import annotations

import os

import orjson


def record(
    figure: str,
    streamd: float,
    anchor: float | None,
    *,
    unit: str,
    target: str,
    ok: bool,
) -> None:
    """Note one figure: streamd's value, the anchor measured in the same run (None when the figure
    has no anchor), whether it meets ``target`` (a text such as ``ratio >= 0.8``)."""
    path = os.environ.get("BENCH_JSON")
    if not path:
        return
    row = {"figure": figure, "streamd": streamd, "anchor": anchor, "unit": unit, "target": target, "ok": ok}
    with open(path, "ab") as out:
        out.write(orjson.dumps(row) + b"\n")
