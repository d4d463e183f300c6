"""The load generator, run as its own process: `python -m bench.load '<spec JSON>'`.

It talks to the orchestrator over stdin/stdout so that the orchestrator can read the CPU
counters of the servers exactly around the measured window:

    generator                      orchestrator
    warm-up (closed loop), drain
    READY                    ->    snapshot counters
                             <-    GO
    measured phase, drain
    DONE                     ->    snapshot counters
    {"result": ...}          ->

In burst mode it prints `WAVE <n>` after each wave and waits for another GO, so the
orchestrator can read memory and the sandbox's call record between waves.

Modes: `closed` (N virtual users, each starting its next flow when the last one ends, for a
duration), `open` (flows started at a fixed rate whatever the latency; latency counted from
the scheduled start, so queueing is not hidden), `burst` (waves of flows started at once,
one size per wave).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.client import Pool, ProtocolError
from bench.flows import FLOWS, Flow, FlowFailed, Targets
from bench.stats import summarize

REQUEST_TIMEOUT = 60.0


@dataclass(slots=True)
class Tally:
    latencies: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0


async def _one(flow: Flow, targets: Targets, tally: Tally, started: float) -> None:
    steps: list[float] = []
    tally.in_flight += 1
    tally.max_in_flight = max(tally.max_in_flight, tally.in_flight)
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            await flow(targets, steps)
    except FlowFailed as exc:
        tally.errors[exc.key] += 1
    except TimeoutError:
        tally.errors["timeout"] += 1
    except (OSError, ValueError, LookupError, ProtocolError) as exc:
        tally.errors[type(exc).__name__] += 1
    else:
        tally.latencies.append(time.perf_counter() - started)
        tally.steps.extend(steps)
    finally:
        tally.in_flight -= 1


async def closed(flow: Flow, targets: Targets, users: int, seconds: float) -> Tally:
    tally = Tally()
    deadline = time.perf_counter() + seconds

    async def user() -> None:
        while time.perf_counter() < deadline:
            await _one(flow, targets, tally, time.perf_counter())

    await asyncio.gather(*(user() for _ in range(users)))
    return tally


async def open_loop(
    flow: Flow, targets: Targets, rate: float, seconds: float, max_in_flight: int
) -> Tally:
    tally = Tally()
    tasks: set[asyncio.Task[None]] = set()
    begin = time.perf_counter()
    total = int(rate * seconds)
    for index in range(total):
        due = begin + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if tally.in_flight >= max_in_flight:
            tally.errors["generator: too many in flight"] += 1
            continue
        task = asyncio.create_task(_one(flow, targets, tally, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return tally


async def burst(flow: Flow, targets: Targets, count: int) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    await asyncio.gather(*(_one(flow, targets, tally, started) for _ in range(count)))
    return tally, time.perf_counter() - started


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _wait_go() -> None:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "GO":
        raise SystemExit("bench.load: the orchestrator went away")


def _report(tally: Tally, wall: float) -> dict[str, Any]:
    completed = len(tally.latencies)
    return {
        "completed": completed,
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors.most_common(10)),
        "wall_s": wall,
        "flows_per_s": completed / wall if wall > 0 else 0.0,
        "latency_ms": summarize(tally.latencies),
        "app_request_ms": summarize(tally.steps),
        "max_in_flight": tally.max_in_flight,
    }


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    flow = FLOWS[spec["flow"]]
    targets = Targets(Pool("127.0.0.1", spec["app_port"]), Pool("127.0.0.1", spec["sandbox_port"]))
    if spec.get("warmup_s", 0) > 0:
        await closed(flow, targets, spec.get("warmup_users", 8), spec["warmup_s"])
    _say("READY")
    await _wait_go()
    cpu = _cpu_seconds()
    requests = targets.app.requests + targets.sandbox.requests
    mode = spec["mode"]
    result: dict[str, Any]
    started = time.perf_counter()
    if mode == "closed":
        tally = await closed(flow, targets, spec["users"], spec["seconds"])
        result = _report(tally, time.perf_counter() - started)
    elif mode == "open":
        tally = await open_loop(
            flow, targets, spec["rate"], spec["seconds"], spec.get("max_in_flight", 5000)
        )
        result = _report(tally, time.perf_counter() - started)
        result["offered_per_s"] = spec["rate"]
    elif mode == "burst":
        waves = []
        sizes: list[int] = spec["sizes"]
        for wave, size in enumerate(sizes):
            tally, wall = await burst(flow, targets, size)
            waves.append(_report(tally, wall))
            if wave < len(sizes) - 1:
                _say(f"WAVE {wave + 1}")
                await _wait_go()
        result = {"waves": waves, "wall_s": time.perf_counter() - started}
        result["completed"] = sum(w["completed"] for w in waves)
    else:
        raise SystemExit(f"bench.load: unknown mode {mode!r}")
    generator_cpu = _cpu_seconds() - cpu
    _say("DONE")
    sent = targets.app.requests + targets.sandbox.requests - requests
    result["generator"] = {
        "cpu_s": generator_cpu,
        "requests": sent,
        "cpu_us_per_request": generator_cpu / sent * 1e6 if sent else None,
        "connections": targets.app.connects + targets.sandbox.connects,
        "stale_retries": targets.app.retries + targets.sandbox.retries,
    }
    targets.app.close()
    targets.sandbox.close()
    return result


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(main(spec))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main(spec))


if __name__ == "__main__":
    _say(json.dumps({"result": _run(json.loads(sys.argv[1]))}))
