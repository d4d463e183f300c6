"""Latency percentiles against load, as a PNG drawn with zlib and struct (no plotting library).

One panel per flow: x = flows/s achieved, y = latency (log scale); p50/p95/p99 of the BFF as
solid lines, of the baseline as dashed ones; the 50 ms target as a grey dashed line.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GREY: Color = (150, 150, 150)
LIGHT: Color = (225, 225, 225)
PERCENTILES: dict[str, Color] = {"p50": (31, 119, 180), "p95": (230, 140, 20), "p99": (214, 39, 40)}
TARGET_MS = 50.0

# A 5x7 font: five columns per glyph, bit 0 at the top (the classic HD44780-style shapes).
_FONT: dict[str, tuple[int, ...]] = {
    " ": (0, 0, 0, 0, 0), "%": (0x23, 0x13, 0x08, 0x64, 0x62), "(": (0, 0x1C, 0x22, 0x41, 0),
    ")": (0, 0x41, 0x22, 0x1C, 0), "-": (8, 8, 8, 8, 8), ".": (0, 0x60, 0x60, 0, 0),
    "/": (0x20, 0x10, 0x08, 0x04, 0x02), ":": (0, 0x36, 0x36, 0, 0), "=": (20, 20, 20, 20, 20),
    "+": (8, 8, 0x3E, 8, 8), ",": (0, 0x50, 0x30, 0, 0), "_": (64, 64, 64, 64, 64),
    "0": (0x3E, 0x51, 0x49, 0x45, 0x3E), "1": (0, 0x42, 0x7F, 0x40, 0),
    "2": (0x42, 0x61, 0x51, 0x49, 0x46), "3": (0x21, 0x41, 0x45, 0x4B, 0x31),
    "4": (0x18, 0x14, 0x12, 0x7F, 0x10), "5": (0x27, 0x45, 0x45, 0x45, 0x39),
    "6": (0x3C, 0x4A, 0x49, 0x49, 0x30), "7": (0x01, 0x71, 0x09, 0x05, 0x03),
    "8": (0x36, 0x49, 0x49, 0x49, 0x36), "9": (0x06, 0x49, 0x49, 0x29, 0x1E),
    "A": (0x7E, 0x11, 0x11, 0x11, 0x7E), "B": (0x7F, 0x49, 0x49, 0x49, 0x36),
    "C": (0x3E, 0x41, 0x41, 0x41, 0x22), "D": (0x7F, 0x41, 0x41, 0x22, 0x1C),
    "E": (0x7F, 0x49, 0x49, 0x49, 0x41), "F": (0x7F, 0x09, 0x09, 0x09, 0x01),
    "G": (0x3E, 0x41, 0x49, 0x49, 0x7A), "H": (0x7F, 0x08, 0x08, 0x08, 0x7F),
    "I": (0, 0x41, 0x7F, 0x41, 0), "J": (0x20, 0x40, 0x41, 0x3F, 0x01),
    "K": (0x7F, 0x08, 0x14, 0x22, 0x41), "L": (0x7F, 0x40, 0x40, 0x40, 0x40),
    "M": (0x7F, 0x02, 0x0C, 0x02, 0x7F), "N": (0x7F, 0x04, 0x08, 0x10, 0x7F),
    "O": (0x3E, 0x41, 0x41, 0x41, 0x3E), "P": (0x7F, 0x09, 0x09, 0x09, 0x06),
    "Q": (0x3E, 0x41, 0x51, 0x21, 0x5E), "R": (0x7F, 0x09, 0x19, 0x29, 0x46),
    "S": (0x46, 0x49, 0x49, 0x49, 0x31), "T": (0x01, 0x01, 0x7F, 0x01, 0x01),
    "U": (0x3F, 0x40, 0x40, 0x40, 0x3F), "V": (0x1F, 0x20, 0x40, 0x20, 0x1F),
    "W": (0x3F, 0x40, 0x38, 0x40, 0x3F), "X": (0x63, 0x14, 0x08, 0x14, 0x63),
    "Y": (0x07, 0x08, 0x70, 0x08, 0x07), "Z": (0x61, 0x51, 0x49, 0x45, 0x43),
}  # fmt: skip


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(WHITE * (width * height))

    def dot(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            at = 3 * (y * self.width + x)
            self.pixels[at : at + 3] = bytes(color)

    def fill(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for y in range(max(0, y0), min(self.height, y1 + 1)):
            for x in range(max(0, x0), min(self.width, x1 + 1)):
                self.dot(x, y, color)

    def line(
        self,
        a: tuple[float, float],
        b: tuple[float, float],
        color: Color,
        width: int = 1,
        dash: int = 0,
    ) -> None:
        (x0, y0), (x1, y1) = a, b
        steps = max(1, int(max(abs(x1 - x0), abs(y1 - y0))))
        half = width // 2
        for i in range(steps + 1):
            if dash and (i // dash) % 2:
                continue
            x = round(x0 + (x1 - x0) * i / steps)
            y = round(y0 + (y1 - y0) * i / steps)
            self.fill(x - half, y - half, x - half + width - 1, y - half + width - 1, color)

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 1) -> None:
        for index, char in enumerate(text.upper()):
            columns = _FONT.get(char, _FONT[" "])
            for cx, bits in enumerate(columns):
                for cy in range(7):
                    if bits >> cy & 1:
                        left, top = x + (6 * index + cx) * scale, y + cy * scale
                        self.fill(left, top, left + scale - 1, top + scale - 1, color)

    def png(self) -> bytes:
        row = 3 * self.width
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * row : (y + 1) * row]) for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def text_width(text: str, scale: int = 1) -> int:
    return 6 * len(text) * scale


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _series(
    results: dict[str, Any], flow: str, target: str
) -> list[tuple[float, dict[str, float]]]:
    points = [
        (run["flows_per_s"], run["latency_ms"])
        for run in results["runs"]
        if run["flow"] == flow
        and run["target"] == target
        and run["workers"] == 1
        and run["phase"] in ("sweep", "max")
        and run["latency_ms"].get("n")
    ]
    return sorted(points, key=lambda p: p[0])


def _panel(canvas: Canvas, results: dict[str, Any], flow: str, left: int, top: int) -> None:
    width, height = 380, 300
    x0, y0, x1, y1 = left + 50, top + 24, left + width - 10, top + height - 36
    series = {t: _series(results, flow, t) for t in ("bff", "baseline")}
    points = [p for s in series.values() for p in s]
    canvas.text(left + 50, top + 4, f"{flow} flow" if flow != "token" else "token minting", scale=2)
    if not points:
        canvas.text(x0 + 20, (y0 + y1) // 2, "no data")
        return
    x_step = _nice_step(max(p[0] for p in points) * 1.05 or 1)
    x_max = x_step * math.ceil(max(p[0] for p in points) * 1.05 / x_step)
    values = [v for _, lat in points for k, v in lat.items() if k in PERCENTILES]
    lo = 10.0 ** math.floor(math.log10(max(min(values), 0.1)))
    hi = 10.0 ** math.ceil(math.log10(max(max(values), TARGET_MS * 1.5)))

    def at(x: float, y: float) -> tuple[float, float]:
        fx = x / x_max
        fy = (math.log10(max(y, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return x0 + fx * (x1 - x0), y1 - fy * (y1 - y0)

    decade = lo
    while decade <= hi:
        for mult in (1, 2, 5):
            value = decade * mult
            if lo <= value <= hi:
                _, y = at(0, value)
                canvas.line((x0, y), (x1, y), LIGHT)
                label = f"{value:g}"
                canvas.text(x0 - 4 - text_width(label), round(y) - 3, label)
        decade *= 10
    tick = 0.0
    while tick <= x_max + 1e-9:
        x, _ = at(tick, lo)
        canvas.line((x, y0), (x, y1), LIGHT)
        label = f"{tick:g}"
        canvas.text(round(x) - text_width(label) // 2, y1 + 5, label)
        tick += x_step
    canvas.line((x0, y1), (x1, y1), BLACK)
    canvas.line((x0, y0), (x0, y1), BLACK)
    _, target_y = at(0, TARGET_MS)
    canvas.line((x0, target_y), (x1, target_y), GREY, width=1, dash=3)
    canvas.text(x1 - text_width("50 MS TARGET"), round(target_y) - 9, "50 ms target", GREY)
    canvas.text((x0 + x1) // 2 - text_width("FLOWS/S ACHIEVED") // 2, y1 + 16, "flows/s achieved")
    canvas.text(left + 4, top + 14, "ms")
    for target, dash, line_width in (("baseline", 5, 1), ("bff", 0, 2)):
        for name, color in PERCENTILES.items():
            coords = [at(x, lat[name]) for x, lat in series[target] if name in lat]
            for a, b in zip(coords, coords[1:], strict=False):
                canvas.line(a, b, color, width=line_width, dash=dash)
            for x, y in coords:
                canvas.fill(round(x) - 2, round(y) - 2, round(x) + 2, round(y) + 2, color)


def write_chart(results: dict[str, Any], path: Path) -> str:
    flows = list(
        dict.fromkeys(r["flow"] for r in results["runs"] if r["phase"] in ("max", "sweep"))
    )
    if not flows:
        return "no chart (no runs)"
    canvas = Canvas(20 + 390 * len(flows), 360)
    for index, flow in enumerate(flows):
        _panel(canvas, results, flow, 10 + 390 * index, 6)
    legend_y = 330
    x = 60
    for name, color in PERCENTILES.items():
        canvas.fill(x, legend_y + 2, x + 18, legend_y + 4, color)
        canvas.text(x + 24, legend_y, name)
        x += 70
    canvas.line((x, legend_y + 3), (x + 24, legend_y + 3), BLACK, width=2)
    canvas.text(x + 30, legend_y, "BFF (1 worker)")
    x += 150
    canvas.line((x, legend_y + 3), (x + 24, legend_y + 3), BLACK, dash=5)
    canvas.text(x + 30, legend_y, "baseline (1 worker)")
    x += 170
    canvas.text(x, legend_y, "latency of whole flows, log scale")
    path.write_bytes(canvas.png())
    return f"wrote {path}"
