"""Percentiles (nearest rank) in milliseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(seconds: Sequence[float]) -> dict[str, float]:
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
