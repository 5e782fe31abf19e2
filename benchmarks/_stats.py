"""The one percentile every benchmark prints its p50 and p99 with (not a benchmark: `make bench`
runs `benchmarks/[a-z]*.py`)."""

from __future__ import annotations


def pct(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1): the smallest value at or above a share q."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
