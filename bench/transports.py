"""The outbound client's transport, chosen by measurement: CPU per call of each candidate
against a canned Flinks answer, at 1, 32 and 200 calls in flight.

Each measurement is its own client process (its CPU from getrusage, warm-up excluded) against
one server process that answers every request with the same /Authorize-sized JSON at once, so
the figure is the client's alone. Candidates, all HTTP/1.1 keep-alive with the BFF's pool size:

- httpx-httpcore: httpx's own transport,
- httpx-aiohttp: httpx over aiohttp's pool (PyPI httpx-aiohttp), as app/outbound builds it,
- aiohttp: aiohttp on its own, no httpx API,
- lean: the load generator's client (bench/client.py), the floor.

Runs are interleaved (each round measures every candidate once) and the table shows the median
and range of `--runs` rounds. `make bench-transports`, or:
    python -m bench.transports --runs 3 --calls 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time

from bench.baseline import AiohttpUpstream, HttpxUpstream, LeanUpstream, Upstream
from bench.procs import free_port, http_ok

CANDIDATES = ("httpx-httpcore", "httpx-aiohttp", "aiohttp", "lean")
ANSWER = json.dumps(
    {
        "HttpStatusCode": 200,
        "Login": {"Id": "4a2c3f5e-0000-4000-8000-000000000000", "Username": "Greatday"},
        "Institution": "FlinksCapital",
        "RequestId": "7b9d2e1a-0000-4000-8000-000000000000",
        "Links": [{"rel": "AccountsDetail", "href": "/GetAccountsDetail"}],
        "Padding": "x" * 600,
    }
).encode()
REQUEST = {"LoginId": "4a2c3f5e-0000-4000-8000-000000000000", "MostRecentCached": False}


class _Canned(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buffer[:end].split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
            )


async def _serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        _Canned, "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def _upstream(name: str) -> Upstream:
    if name == "httpx-httpcore":
        return HttpxUpstream("httpcore")
    if name == "httpx-aiohttp":
        return HttpxUpstream("aiohttp")
    return AiohttpUpstream() if name == "aiohttp" else LeanUpstream()


async def _client(name: str, port: int, inflight: int, calls: int) -> dict[str, float]:
    upstream = _upstream(name)
    await upstream.start()
    url = f"http://127.0.0.1:{port}/v3/customer/BankingServices/Authorize"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}

    async def worker(count: int) -> None:
        for _ in range(count):
            status, _body = await upstream.post(url, headers, REQUEST)
            assert status == 200

    per_worker = max(1, calls // inflight)
    await asyncio.gather(*(worker(max(2, per_worker // 5)) for _ in range(inflight)))  # warm
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(worker(per_worker) for _ in range(inflight)))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    await upstream.close()
    done = per_worker * inflight
    used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return {"cpu_us": used / done * 1e6, "wall_us": wall / done * 1e6}


def _measure(name: str, port: int, inflight: int, calls: int) -> dict[str, float]:
    argv = [sys.executable, "-m", "bench.transports", "--client", name, "--port", str(port)]
    argv += ["--inflight", str(inflight), "--calls", str(calls)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)  # noqa: S603
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def _table(results: dict[str, dict[int, list[float]]], levels: list[int]) -> str:
    head = "| transport | " + " | ".join(f"{n} in flight" for n in levels) + " |"
    lines = [
        "CPU per call of the client, microseconds: median [lowest-highest]",
        "",
        head,
        "|---" * (len(levels) + 1) + "|",
    ]
    for name, by_level in results.items():
        cells = []
        for level in levels:
            values = by_level[level]
            cells.append(
                f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds, at least 3 (3)")
    parser.add_argument("--calls", type=int, default=3000, help="calls per measurement (3000)")
    parser.add_argument("--inflight", default="1,32,200", help="levels (1,32,200)")
    parser.add_argument("--only", default=",".join(CANDIDATES), help="candidates")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.serve:
        asyncio.run(_serve(opts.port))
        return 0
    if opts.client:
        figures = asyncio.run(_client(opts.client, opts.port, int(opts.inflight), opts.calls))
        print(json.dumps(figures))
        return 0
    levels = [int(level) for level in opts.inflight.split(",")]
    names = [name for name in opts.only.split(",") if name]
    port = free_port()
    argv_server = [sys.executable, "-m", "bench.transports", "--serve", "--port", str(port)]
    server = subprocess.Popen(argv_server)  # noqa: S603
    try:
        deadline = time.monotonic() + 10
        while not http_ok(port, "/"):
            if time.monotonic() > deadline:
                raise RuntimeError("the canned server did not start")
            time.sleep(0.05)
        results: dict[str, dict[int, list[float]]] = {n: {lv: [] for lv in levels} for n in names}
        for run in range(max(3, opts.runs)):
            for level in levels:
                for name in names:
                    figures = _measure(name, port, level, opts.calls)
                    results[name][level].append(figures["cpu_us"])
                    print(
                        f"[transports] run {run + 1} {name} x{level}: {figures['cpu_us']:,.0f} us",
                        file=sys.stderr,
                    )
        print(_table(results, levels))
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
