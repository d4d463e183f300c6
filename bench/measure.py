"""One measured run: a generator process against an app, with the counters of every process
read exactly around the measured window (see the READY/GO/DONE exchange in bench/load.py)."""

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

from bench.procs import Machine, Service, Usage, hwm_bytes, machine, process_tree, rss_bytes, usage

SLACK_S = 90.0  # beyond the run's own duration, before the generator is declared hung
# A run is disturbed (flagged, and repeated) when the hypervisor took this share of the
# machine's CPU time (steal), or processes not of the bench used this share of it, or the app
# waited for a CPU this long for each second it ran (schedstat run-queue wait).
MAX_STEAL_SHARE = 0.03
MAX_OTHERS_SHARE = 0.10
MAX_APP_WAIT_PER_CPU = 1.0


@dataclass(frozen=True)
class Watched:
    """The app under test and the other processes of the chain (name -> root pid)."""

    app: Service
    others: dict[str, int]

    def read(self, generator: int) -> dict[str, Usage]:
        readings = {"app": usage(self.app.pids())}
        for name, pid in self.others.items():
            readings[name] = usage(process_tree(pid))
        readings["generator"] = usage([generator])
        return readings


def _lines(stream: IO[str], out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line.rstrip("\n"))
    out.put(None)


def run_load(
    spec: dict[str, Any],
    watched: Watched,
    budget_s: float,
    between_waves: Callable[[int], dict[str, Any]] | None = None,
    on_start: Callable[[], None] | None = None,
    judge_wait: bool = False,
) -> dict[str, Any]:
    """Run the generator with `spec`: its result, plus CPU and run-queue wait per process, the
    machine's steal and other processes' CPU in the window, and the app's memory.

    `on_start` runs after the warm-up, before the counters are read; `between_waves(n)` after
    burst wave n (its answer is kept in the result). `judge_wait`: whether the app's run-queue
    wait marks the run as disturbed (not where the bench's own processes saturate the CPUs).
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
        before, machine_before = watched.read(process.pid), machine()
        rss_before = rss_bytes(app_pids)
        waves: list[dict[str, Any]] = []
        go()
        while (line := expect("")) != "DONE":
            if not line.startswith("WAVE"):
                raise RuntimeError(f"the generator said {line!r}")
            if between_waves is not None:
                waves.append(between_waves(int(line.split()[1])))
            go()
        after, spent = watched.read(process.pid), machine() - machine_before
        rss_after = rss_bytes(app_pids)
        result: dict[str, Any] = json.loads(expect("{"))["result"]
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    used = {name: after[name] - before[name] for name in after}
    _account(result, used, spent, judge_wait)
    result["rss"] = {"before": rss_before, "after": rss_after, "hwm": hwm_bytes(app_pids)}
    if waves:
        result["between_waves"] = waves
    return result


def _account(
    result: dict[str, Any], used: dict[str, Usage], spent: Machine, judge_wait: bool
) -> None:
    flows = max(result["completed"], 1)
    cpu = {name: u.cpu for name, u in used.items()}
    # The generator's own count (getrusage) is exact and covers exited threads.
    cpu["generator"] = result["generator"]["cpu_s"]
    result["cpu_s"] = cpu
    result["cpu_ms_per_flow"] = {name: 1000 * s / flows for name, s in cpu.items()}
    result["wait_ms_per_flow"] = {name: 1000 * u.wait / flows for name, u in used.items()}
    capacity = result["wall_s"] * (os.cpu_count() or 1)
    others = max(0.0, spent.busy - sum(cpu.values()))
    steal_share = spent.steal / capacity if capacity else 0.0
    others_share = others / capacity if capacity else 0.0
    app_wait = used["app"].wait / cpu["app"] if cpu["app"] else 0.0
    reasons = []
    if steal_share > MAX_STEAL_SHARE:
        reasons.append(f"steal {steal_share:.0%}")
    if others_share > MAX_OTHERS_SHARE:
        reasons.append(f"other processes {others_share:.0%}")
    if judge_wait and app_wait > MAX_APP_WAIT_PER_CPU:
        reasons.append(f"app run-queue wait {app_wait:.2f} s per CPU s")
    result["machine"] = {
        "steal_share": steal_share,
        "others_share": others_share,
        "app_wait_per_cpu": app_wait,
        "disturbed": reasons,
    }
