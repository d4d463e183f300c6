"""Figures the suite measures (race rounds, payloads tried, cases run...), printed at the end.

Under pytest-xdist each worker records its own; tests/conftest.py hands them to the controller,
which prints them all.
"""

from __future__ import annotations

FIGURES: dict[str, str] = {}


def record(name: str, text: str) -> None:
    FIGURES[name] = text
