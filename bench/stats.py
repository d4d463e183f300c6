"""Percentiles (nearest rank) of one run, and the median and spread of a figure over runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """A run's latencies in milliseconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "mean": 1000 * sum(ordered) / len(ordered),
        "p50": 1000 * percentile(ordered, 0.50),
        "p95": 1000 * percentile(ordered, 0.95),
        "p99": 1000 * percentile(ordered, 0.99),
        "max": 1000 * ordered[-1],
    }


def figure(values: Sequence[Any]) -> dict[str, float] | None:
    """The median of a figure over runs, with its spread (lowest and highest run)."""
    finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if not finite:
        return None
    return {
        "median": statistics.median(finite),
        "min": min(finite),
        "max": max(finite),
        "n": len(finite),
    }
