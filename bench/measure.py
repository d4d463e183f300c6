"""One measured run: a generator process against a server, with the servers' counters read
exactly around the measured window (see the READY/GO/DONE exchange in bench/load.py)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from bench.procs import (
    RssSampler,
    Service,
    cpu_seconds,
    hwm_bytes,
    machine_busy_seconds,
    process_tree,
    rss_bytes,
)

SLACK_S = 90.0  # beyond the run's own duration, before the generator is declared hung


@dataclass(frozen=True)
class Watched:
    """Processes whose CPU is read around each run (name -> root pid)."""

    app: Service
    others: dict[str, int]


def _lines(stream: IO[str], out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line.rstrip("\n"))
    out.put(None)


def _cpu(watched: Watched) -> dict[str, float]:
    readings = {"app": watched.app.cpu()}
    for name, pid in watched.others.items():
        readings[name] = cpu_seconds(process_tree(pid))
    return readings


def run_load(
    spec: dict[str, Any],
    watched: Watched,
    budget_s: float,
    between_waves: Callable[[int], dict[str, Any]] | None = None,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run the generator with `spec`; the result plus CPU per process and the app's memory.

    `on_start` runs after the warm-up, before the counters are read; `on_stop` right after the
    measured window; `between_waves(n)` after burst wave n (its answer is kept in the result).
    """
    process = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "bench.load", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    stdin = process.stdin

    def expect(prefix: str) -> str:
        try:
            line = lines.get(timeout=budget_s + SLACK_S)
        except queue.Empty:
            process.kill()
            raise RuntimeError(f"the generator hung waiting for {prefix}") from None
        if line is None or not line.startswith(prefix):
            process.kill()
            raise RuntimeError(f"the generator said {line!r}, expected {prefix}")
        return line

    def go() -> None:
        stdin.write("GO\n")
        stdin.flush()

    try:
        expect("READY")
        if on_start is not None:
            on_start()
        app_pids = watched.app.pids()
        before = _cpu(watched)
        machine_before = machine_busy_seconds()
        rss_before = rss_bytes(app_pids)
        waves: list[dict[str, Any]] = []
        with RssSampler(watched.app.pid) as sampler:
            go()
            while True:
                line = expect("")
                if line.startswith("WAVE") and between_waves is not None:
                    waves.append(between_waves(int(line.split()[1])))
                    go()
                elif line == "DONE":
                    break
                elif line.startswith("WAVE"):
                    go()
                else:
                    raise RuntimeError(f"the generator said {line!r}")
            after = _cpu(watched)
            machine = machine_busy_seconds() - machine_before
            rss_after = rss_bytes(app_pids)
            if on_stop is not None:
                on_stop()
        result: dict[str, Any] = json.loads(expect("{"))["result"]
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    completed = max(result["completed"], 1)
    cpu = {name: after[name] - before[name] for name in after}
    result["cpu_s"] = cpu
    result["cpu_ms_per_flow"] = {name: 1000 * value / completed for name, value in cpu.items()}
    result["cpu_ms_per_flow"]["generator"] = 1000 * result["generator"]["cpu_s"] / completed
    result["rss"] = {
        "before": rss_before,
        "after": rss_after,
        "peak": max(sampler.peak, rss_before, rss_after),
        "hwm": hwm_bytes(app_pids),
    }
    # CPU the rest of the machine used meanwhile (other people's tests, say): the share of
    # the machine's capacity in the window that was not ours.
    ours = sum(cpu.values()) + result["generator"]["cpu_s"]
    capacity = result["wall_s"] * (os.cpu_count() or 1)
    result["machine"] = {
        "busy_s": machine,
        "others_s": max(0.0, machine - ours),
        "others_share": max(0.0, machine - ours) / capacity if capacity else None,
    }
    if waves:
        result["between_waves"] = waves
    return result
