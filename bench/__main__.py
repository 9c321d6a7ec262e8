"""``python -m bench``: every bench, each in its own processes, then one table of ratios.

Each bench module runs as a subprocess with its default arguments (the figures BENCHMARKS.md
records) and notes its rows through :mod:`bench.report`. The machine's load average is printed
beside each bench: a ratio measured on a busy machine says less.

Usage: python -m bench [NAME ...]   (names: the modules below; default: all)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

BENCHES = (
    "pipeline_throughput",
    "o2g_chunk_throughput",
    "o2g_latency",
    "o2g_webhook",
    "alvaria_diff",
    "wallboard_memory",
    "loop_lag",
)


def main(names: list[str]) -> int:
    chosen = names or list(BENCHES)
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        print(f"unknown bench: {', '.join(unknown)} (known: {', '.join(BENCHES)})", file=sys.stderr)
        return 2
    rows: list[tuple[str, dict[str, object], float]] = []
    failed: list[str] = []
    for name in chosen:
        with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as out:
            path = out.name
        load = os.getloadavg()[0]
        print(f"== bench.{name} (load average {load:.2f})", flush=True)
        started = time.monotonic()
        code = subprocess.call(
            [sys.executable, "-m", f"bench.{name}"], env={**os.environ, "BENCH_JSON": path}
        )
        print(f"   {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
        for line in Path(path).read_bytes().splitlines():
            rows.append((name, orjson.loads(line), load))
        Path(path).unlink()
    print()
    print(
        f"{'bench':<22}{'figure':<52}{'streamd':>12}{'anchor':>12}{'ratio':>8}  {'target':<22}{'ok':<4}{'load':>6}"
    )
    for name, row, load in rows:
        streamd, anchor = float(row["streamd"]), row["anchor"]  # type: ignore[arg-type]
        ratio = f"{streamd / float(anchor):8.2f}" if anchor else f"{'-':>8}"  # type: ignore[arg-type]
        anchor_text = f"{float(anchor):12.1f}" if anchor is not None else f"{'-':>12}"  # type: ignore[arg-type]
        print(
            f"{name:<22}{str(row['figure'])[:50]:<52}{streamd:12.1f}{anchor_text}{ratio}  "
            f"{str(row['target'])[:21]:<22}{'yes' if row['ok'] else 'NO':<4}{load:6.2f}"
        )
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
