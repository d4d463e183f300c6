"""Figures the suite measures (race rounds, payloads tried, cases run...), printed at the end."""

from __future__ import annotations

FIGURES: dict[str, str] = {}


def record(name: str, text: str) -> None:
    FIGURES[name] = text
