"""The pictures of the ImageSelection challenge: small PNGs drawn here, byte-for-byte stable.

Flinks sends an ImageSelection challenge's pictures as base64 PNG strings in ``Iterables``, and the
answer is the chosen string itself (public integrations put ``data:image/png;base64,`` in front
to show it). The sandbox draws four shapes without any imaging library.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable

SIZE = 32
_INK = (11, 92, 173)
_PAPER = (255, 255, 255)
_MID = (SIZE - 1) / 2

Shape = Callable[[int, int], bool]


def _circle(x: int, y: int) -> bool:
    return (x - _MID) ** 2 + (y - _MID) ** 2 <= 13**2


def _square(x: int, y: int) -> bool:
    return 5 <= x <= SIZE - 6 and 5 <= y <= SIZE - 6


def _triangle(x: int, y: int) -> bool:
    top, bottom = 4, SIZE - 5
    return top <= y <= bottom and abs(x - _MID) <= (y - top) * 0.55


def _diamond(x: int, y: int) -> bool:
    return abs(x - _MID) + abs(y - _MID) <= 14


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(shape: Shape) -> bytes:
    """An 8-bit RGB PNG of ``shape`` (a predicate on pixel coordinates)."""
    rows = bytearray()
    for y in range(SIZE):
        rows.append(0)  # filter type: none
        for x in range(SIZE):
            rows.extend(_INK if shape(x, y) else _PAPER)
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _chunk(b"IEND", b"")
    )


def _encoded(shape: Shape) -> str:
    return base64.b64encode(png(shape)).decode("ascii")


CIRCLE = _encoded(_circle)
SQUARE = _encoded(_square)
TRIANGLE = _encoded(_triangle)
DIAMOND = _encoded(_diamond)
