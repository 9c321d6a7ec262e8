"""The loop-lag bench's figure: read from the daemon's histogram, p99 under 20 ms only when the
bucket holding it ends below 20 ms, and the shares of ticks later than 10 and 20 ms."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.loop_lag import late, p99, shares
from streamd.telemetry import LOOP_LAG

BOUNDS = sorted(
    {
        float(s.labels["le"])
        for m in LOOP_LAG.collect()
        for s in m.samples
        if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
    }
)


def scrape(lags: list[float]) -> dict[float, float]:
    """The cumulative buckets a daemon whose ticker saw ``lags`` exports, as the bench reads them."""
    registry = CollectorRegistry()
    histogram = Histogram("streamd_event_loop_lag_seconds", "lag", buckets=BOUNDS, registry=registry)
    for lag in lags:
        histogram.observe(lag)
    out: dict[float, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("streamd_event_loop_lag_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def test_the_histogram_tells_a_p99_under_20_ms_from_one_on_the_bound() -> None:
    assert {0.01, 0.015, 0.0175, 0.02} <= set(BOUNDS)
    quiet = scrape([0.001] * 980 + [0.016] * 20)  # 2 % of the ticks late, all within 17.5 ms
    assert p99({}, quiet) == (0.0175, 1000)
    on_the_bound = scrape([0.001] * 985 + [0.019] * 15)  # 1.5 % between 17.5 and 20 ms
    assert p99({}, on_the_bound)[0] == 0.02  # "<= 20 ms": not under it
    assert late({}, on_the_bound, 0.02) == 0
    assert late({}, on_the_bound, 0.01) == pytest.approx(0.015)


def test_the_shares_count_only_the_ticks_between_two_scrapes() -> None:
    before = scrape([0.05] * 10)
    after = scrape([0.05] * 10 + [0.001] * 180 + [0.012] * 15 + [0.025] * 5)
    assert late(before, after, 0.02) == pytest.approx(5 / 200)
    assert shares(before, after) == "2.5% later than 20 ms, 10.0% later than 10 ms"
    with pytest.raises(ValueError, match=r"no 0\.042 s bucket"):
        late(before, after, 0.042)
