"""A tiny bounded HTTP/1.1 load generator for the sandbox (loopback only).

    python -m tests.sandbox.loadgen --url http://127.0.0.1:8001 --seconds 5 --connections 32

POSTs GenerateAuthorizeToken over keep-alive connections for a fixed time and prints requests/s.
Raw asyncio streams keep the client cheap, so on a small machine most CPU goes to the server.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from urllib.parse import urlsplit

from app.sandbox.config import TOOLBOX_CUSTOMER_ID, TOOLBOX_SECRET_KEY


async def _worker(host: str, port: int, request: bytes, stop_at: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            counts[0 if status_line.split(b" ", 2)[1] == b"200" else 1] += 1
    finally:
        writer.close()


async def run(url: str, seconds: float, connections: int, customer_id: str, secret: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loadgen only targets loopback addresses")
    path = f"/v3/{customer_id}/BankingServices/GenerateAuthorizeToken"
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nflinks-auth-key: {secret}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    counts = [0, 0]
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(
        *(_worker(host, port, request, stop_at, counts) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    total = counts[0] + counts[1]
    sys.stdout.write(
        f"{total} requests in {elapsed:.2f}s over {connections} connections: "
        f"{total / elapsed:.0f} req/s ({counts[0]} x 200, {counts[1]} other)\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8001")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--customer-id", default=TOOLBOX_CUSTOMER_ID)
    parser.add_argument("--secret-key", default=TOOLBOX_SECRET_KEY)
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 0.1), 60.0)  # bounded by design
    asyncio.run(run(args.url, seconds, args.connections, args.customer_id, args.secret_key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
