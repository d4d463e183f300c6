"""The headline as an SVG, written as text: at the fixed rate, per flow, each app's CPU ms per
flow and p99 latency (bars at the median, whiskers from the lowest to the highest run), with
issue 18's targets as dashed lines."""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape

from bench.report import MAX_CPU_MS, MAX_P99_MS

APPS = {"bff": "#d62728", "fastapi": "#ff7f0e", "baseline": "#1f77b4", "floor": "#7f7f7f"}
PANEL_W, PANEL_H, MARGIN, TOP = 420, 260, 50, 40
PANELS = (
    ("cpu_app", "CPU ms per flow", max(MAX_CPU_MS.values())),
    ("p99", "p99 ms", MAX_P99_MS),
)


def _text(x: float, y: float, text: str, size: int = 11, anchor: str = "middle") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}">'
        f"{escape(text)}</text>"
    )


def _step(top: float) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving at most 6 ticks up to `top`."""
    power = 10 ** math.floor(math.log10(top / 5)) if top > 0 else 1.0
    return next(power * m for m in (1, 2, 5, 10) if top / (power * m) <= 5)


def _panel(results: dict[str, Any], name: str, label: str, target: float, left: float) -> str:
    cells = [c for c in results["summary"] if c["phase"] == "fixed" and c.get(name)]
    flows = list(dict.fromkeys(c["flow"] for c in cells))
    step = _step(max([target, *(float(c[name]["max"]) for c in cells)]))
    top = step * math.ceil(max([target, *(float(c[name]["max"]) for c in cells)]) / step)
    width, height = PANEL_W - MARGIN, PANEL_H

    def y(value: float) -> float:
        return TOP + height - height * value / top

    out = [
        _text(left + PANEL_W / 2, 20, f"{label} at a fixed rate (median, lowest-highest run)", 12),
        f'<line x1="{left + MARGIN}" y1="{y(0)}" x2="{left + PANEL_W}" y2="{y(0)}" '
        'stroke="black"/>',
    ]
    for tick in range(round(top / step) + 1):
        value = tick * step
        out.append(_text(left + MARGIN - 5, y(value) + 4, f"{value:g}", 10, "end"))
    out.append(
        f'<line x1="{left + MARGIN}" y1="{y(target):.1f}" x2="{left + PANEL_W}" '
        f'y2="{y(target):.1f}" stroke="black" stroke-dasharray="5,4"/>'
    )
    out.append(_text(left + PANEL_W, y(target) - 4, f"target {target:g}", 10, "end"))
    group = width / max(1, len(flows))
    bar = group / (len(APPS) + 1)
    for i, flow in enumerate(flows):
        x0 = left + MARGIN + i * group + bar / 2
        out.append(_text(x0 + bar * len(APPS) / 2, y(0) + 16, flow))
        for j, (app, color) in enumerate(APPS.items()):
            cell = next((c for c in cells if (c["flow"], c["target"]) == (flow, app)), None)
            if cell is None:
                continue
            value, x = cell[name], x0 + j * bar
            out.append(
                f'<rect x="{x:.1f}" y="{y(value["median"]):.1f}" width="{bar * 0.9:.1f}" '
                f'height="{y(0) - y(value["median"]):.1f}" fill="{color}"/>'
            )
            mid = x + bar * 0.45
            out.append(
                f'<line x1="{mid:.1f}" y1="{y(value["min"]):.1f}" x2="{mid:.1f}" '
                f'y2="{y(value["max"]):.1f}" stroke="black"/>'
            )
    return "\n".join(out)


def svg(results: dict[str, Any]) -> str:
    total_w, total_h = PANEL_W * len(PANELS) + 20, TOP + PANEL_H + 50
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" '
        'font-family="sans-serif">',
        f'<rect width="{total_w}" height="{total_h}" fill="white"/>',
    ]
    for index, (name, label, target) in enumerate(PANELS):
        parts.append(_panel(results, name, label, target, index * PANEL_W))
    for k, (app, color) in enumerate(APPS.items()):
        x = MARGIN + k * 110
        parts.append(f'<rect x="{x}" y="{total_h - 18}" width="12" height="12" fill="{color}"/>')
        parts.append(_text(x + 16, total_h - 8, app, 11, "start"))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
