"""`python -m bench.run`: the flinks-bff benchmark, end to end (`make bench`).

It starts a Redis server, the Flinks sandbox and four apps, each its own process with one
worker: the BFF (`flinks-bff serve`), the baseline (bench/baseline.py with httpx, the BFF's
client), the floor (the same app with the bench's lean client) and, at the fixed rate only,
the baseline behind FastAPI (bench/framework.py: what the framework costs on its own). A
generator process (bench/load.py) drives one app at a time; every figure is the median of at
least 3 runs, the apps interleaved run by run, and a run that other processes disturbed is
flagged and repeated.

1. saturation:  closed loop at --users flows in flight: flows/s, CPU per flow
2. fixed rate:  open loop at half the BFF's saturated flows/s, the same rate for every app:
                CPU per flow (the headline), p50/p99, run-queue wait per flow
3. concurrency: the BFF in a closed loop at 1 and at 200 flows in flight: CPU per flow
4. burst:       the sandbox adds 200 ms to every Flinks call; waves of 500 OAuth flows
                started at once: wall time against the upstream chain, errors, memory
5. profile:     py-spy on the BFF and the baseline at the fixed rate: CPU by package

Output: tables on stdout (progress on stderr), `<out>/results.json`, `<out>/cpu.svg`, logs
in `<out>/logs/`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

from bench import chart, profile, report
from bench.flows import SEQUENTIAL_UPSTREAM_CALLS
from bench.measure import Watched, run_load
from bench.procs import (
    Service,
    app_env,
    control,
    redis_server,
    rss_bytes,
    start_app,
    start_sandbox,
    usage,
)
from bench.stats import figure

TARGETS = ("bff", "baseline", "floor")
# The fixed rate (the headline) also runs the baseline behind FastAPI (bench/framework.py).
FIXED_TARGETS = ("bff", "fastapi", "baseline", "floor")
MAX_REPEATS = 2  # extra runs of one cell, at most, to replace disturbed ones


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


PHASES = ("saturation", "fixed", "concurrency", "burst", "profile")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--flows", default="oauth,connect,token", help="flows to run (oauth,connect,token)")
    add("--runs", type=int, default=3, help="runs per figure, at least 3 (3)")
    add("--users", type=int, default=32, help="flows in flight at saturation (32)")
    add("--duration", type=float, default=3.0, help="seconds per saturation run (3)")
    add("--warmup", type=float, default=1.0, help="seconds of warm-up before each run (1)")
    add("--fixed-fraction", type=float, default=0.5, help="of the BFF's maximum (0.5)")
    add(
        "--fixed-rate",
        type=float,
        default=None,
        help="flows/s of the fixed phase instead (no saturation needed): for back-to-back runs "
        "of two commits at one rate",
    )
    add("--fixed-duration", type=float, default=5.0, help="seconds per fixed-rate run (5)")
    add("--concurrency", default="1,200", help="flows in flight, concurrency phase (1,200)")
    add("--concurrency-flows", default="oauth,connect", help="(oauth,connect)")
    add("--concurrency-duration", type=float, default=3.0, help="seconds per run (3)")
    add("--burst", type=int, default=500, help="OAuth flows started at once per wave (500)")
    add(
        "--burst-targets",
        default="bff,fastapi,floor",
        help="apps of the burst phase (bff,fastapi,floor)",
    )
    add("--latency-ms", type=float, default=200.0, help="sandbox latency per call, burst (200)")
    add("--profile-seconds", type=float, default=5.0, help="per flow and app (5; 0 = none)")
    add("--profile-targets", default="bff,baseline", help="(bff,baseline)")
    add(
        "--transport",
        default="aiohttp",
        choices=("aiohttp", "httpcore"),
        help="BFF_HTTP_TRANSPORT of the BFF and the baseline (aiohttp)",
    )
    add("--log-level", default="INFO", help="BFF_LOG_LEVEL of the BFF under test (INFO)")
    add(
        "--bff-env",
        action="append",
        default=[],
        type=_setting,
        metavar="NAME=VALUE",
        help="a setting of the BFF under test only, e.g. BFF_LOG_LEVEL=WARNING (repeatable)",
    )
    add("--phases", default=",".join(PHASES), help=f"phases to run ({','.join(PHASES)})")
    add("--out", default="build/bench", help="output folder (build/bench)")
    add("--budget", type=float, default=540.0, help="seconds; later runs are skipped past it")
    add("--quick", action="store_true", help="about 2 minutes: shorter runs, fewer flows")
    return parser


def _options(argv: list[str] | None) -> argparse.Namespace:
    opts = _parser().parse_args(argv)
    if opts.quick or os.environ.get("BENCH_QUICK") == "1":
        opts.quick = True
        opts.flows, opts.duration, opts.warmup, opts.fixed_duration = "oauth,connect", 1.0, 0.5, 2.0
        opts.concurrency_duration, opts.burst, opts.profile_seconds = 1.0, 100, 2.0
        opts.profile_targets, opts.concurrency_flows, opts.budget = "bff", "oauth", 150.0
    opts.runs = max(3, opts.runs)
    opts.flow_list = [f for f in opts.flows.split(",") if f]
    opts.phase_list = [p for p in opts.phases.split(",") if p]
    if unknown := set(opts.phase_list) - set(PHASES):
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    if opts.fixed_rate is not None and opts.fixed_rate <= 0:
        raise SystemExit("--fixed-rate takes a positive number of flows/s")
    fixed = "fixed" in opts.phase_list and opts.fixed_rate is None
    if fixed and "saturation" not in opts.phase_list:
        raise SystemExit(
            "the fixed rate is half the saturated one: --phases needs saturation, or --fixed-rate"
        )
    return opts


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _git(*args: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607 - read-only queries of the work tree
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return ""
    return done.stdout.strip()


def _meta(opts: argparse.Namespace) -> dict[str, Any]:
    changed = [line[3:] for line in _git("status", "--porcelain", "--", "app").splitlines()]
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "app_files_uncommitted": changed,
        "options": {k: v for k, v in vars(opts).items() if not k.endswith("_list")},
    }


@dataclass(frozen=True)
class Cell:
    """One figure's runs: a phase, an app, a flow, and the load (users or a rate)."""

    phase: str
    target: str
    flow: str
    mode: dict[str, Any] = field(hash=False)
    seconds: float
    key: str  # e.g. "users=32", "rate=24.5"


@dataclass
class World:
    redis: Redis
    redis_pid: int
    sandbox: Service
    apps: dict[str, Service]

    def watched(self, target: str) -> Watched:
        return Watched(self.apps[target], {"sandbox": self.sandbox.pid, "redis": self.redis_pid})

    def reset(self) -> None:
        control(self.sandbox, "POST", "/__sandbox/reset")
        self.redis.flushall()


class Bench:
    def __init__(self, opts: argparse.Namespace, out: Path) -> None:
        self.opts = opts
        self.out = out
        self.runs: list[dict[str, Any]] = []
        self.profiles: dict[str, dict[str, Any]] = {}
        self.rates: dict[str, float] = {}
        self.skipped: list[str] = []
        self.cells: list[Cell] = []
        self.deadline = time.monotonic() + opts.budget

    def fits(self, what: str, seconds: float) -> bool:
        """Whether `what` (about `seconds` long) still fits in the time budget."""
        if time.monotonic() + seconds <= self.deadline:
            return True
        self.skipped.append(what)
        _progress(f"skipped {what}: over the --budget of {self.opts.budget:.0f} s")
        return False

    def spec(self, world: World, cell: Cell) -> dict[str, Any]:
        return {
            "flow": cell.flow,
            "app_port": world.apps[cell.target].port,
            "sandbox_port": world.sandbox.port,
            "warmup_s": self.opts.warmup,
            "warmup_users": 8,
            "seconds": cell.seconds,
            **cell.mode,
        }

    # -- runs of cells, median of at least --runs undisturbed ones ---------------------------

    def run_cell(
        self,
        world: World,
        cell: Cell,
        on_start: Callable[[], None] | None = None,
        again: bool = False,
    ) -> dict[str, Any] | None:
        where = f"{'again: ' if again else ''}{cell.phase} {cell.target} {cell.flow} {cell.key}"
        if not self.fits(where, cell.seconds + self.opts.warmup + 2):
            return None
        world.reset()
        result = run_load(
            self.spec(world, cell),
            world.watched(cell.target),
            budget_s=cell.seconds + self.opts.warmup,
            on_start=on_start,
            judge_wait=cell.phase == "fixed",
        )
        record = {"phase": cell.phase, "target": cell.target, "flow": cell.flow, "key": cell.key}
        record.update(result)
        self.runs.append(record)
        disturbed = result["machine"]["disturbed"]
        _progress(
            f"{where}: {result['flows_per_s']:.1f} flows/s, "
            f"p99 {result['latency_ms'].get('p99', float('nan')):.1f} ms, "
            f"{result['errors']} errors, app {result['cpu_ms_per_flow']['app']:.2f} ms CPU/flow"
            + (f"  DISTURBED: {', '.join(disturbed)}" if disturbed else "")
        )
        return record

    def run_cells(self, world: World, cells: list[Cell]) -> None:
        """Every cell --runs times, interleaved: run 1 of each, then run 2 of each, ..."""
        self.cells += cells
        for _ in range(self.opts.runs):
            for cell in cells:
                self.run_cell(world, cell)

    def repeat_disturbed(self, world: World) -> None:
        """Last, as the time budget allows: cells short of --runs undisturbed runs get more
        (a few at most), and a disturbed burst is run again."""
        for cell in self.cells:
            for _ in range(MAX_REPEATS):
                enough = self._clean_runs(cell) >= self.opts.runs
                if enough or not self.run_cell(world, cell, again=True):
                    break
        for target in self.opts.burst_targets.split(","):
            bursts = [r for r in self.runs if (r["phase"], r["target"]) == ("burst", target)]
            disturbed = bool(bursts) and all(r["machine"]["disturbed"] for r in bursts)
            if disturbed and self.fits(f"burst {target} again", self._burst_seconds(bursts[-1])):
                self._burst(world, target)

    @staticmethod
    def _burst_seconds(run: dict[str, Any]) -> float:
        return 5.0 + float(sum(w["wall_s"] for w in run["waves"]))

    def _clean_runs(self, cell: Cell) -> int:
        return sum(
            1
            for r in self.runs
            if (r["phase"], r["target"], r["flow"], r["key"])
            == (cell.phase, cell.target, cell.flow, cell.key)
            and not r["machine"]["disturbed"]
        )

    # -- phases -------------------------------------------------------------------------------

    def saturation(self, world: World) -> None:
        users = self.opts.users
        mode = {"mode": "closed", "users": users}
        self.run_cells(
            world,
            [
                Cell("saturation", target, flow, mode, self.opts.duration, f"users={users}")
                for flow in self.opts.flow_list
                for target in TARGETS
            ],
        )

    def fixed(self, world: World) -> None:
        cells = []
        for flow in self.opts.flow_list:
            if self.opts.fixed_rate is not None:
                rate = self.opts.fixed_rate
            else:
                saturated = report.clean(self.runs, "saturation", "bff", flow)
                best = figure([r["flows_per_s"] for r in saturated])
                if best is None:
                    continue
                rate = round(max(1.0, self.opts.fixed_fraction * best["median"]), 1)
            self.rates[flow] = rate
            mode = {"mode": "open", "rate": rate}
            for target in FIXED_TARGETS:
                key = f"rate={rate}"
                cells.append(Cell("fixed", target, flow, mode, self.opts.fixed_duration, key))
        self.run_cells(world, cells)

    def concurrency(self, world: World) -> None:
        flows = [f for f in self.opts.concurrency_flows.split(",") if f in self.opts.flow_list]
        levels = [int(n) for n in self.opts.concurrency.split(",") if n]
        seconds = self.opts.concurrency_duration
        self.run_cells(
            world,
            [
                Cell(
                    "concurrency",
                    "bff",
                    flow,
                    {"mode": "closed", "users": n},
                    seconds,
                    f"users={n}",
                )
                for flow in flows
                for n in levels
            ],
        )

    def burst(self, world: World) -> None:
        if "oauth" not in self.opts.flow_list or self.opts.burst <= 0:
            return
        for target in self.opts.burst_targets.split(","):
            if target in world.apps and self.fits(f"burst {target}", 30):
                self._burst(world, target)

    def _burst(self, world: World, target: str) -> None:
        app, sandbox = world.apps[target], world.sandbox
        world.reset()
        control(sandbox, "PATCH", "/__sandbox/faults", {"latency_ms": self.opts.latency_ms})
        cpu_marks: list[float] = []

        def between(wave: int) -> dict[str, Any]:
            cpu_marks.append(usage(app.pids()).cpu)
            seen = {"wave": wave, "rss": rss_bytes(app.pids()), **upstream_overlap(sandbox)}
            control(sandbox, "DELETE", "/__sandbox/calls")
            return seen

        def start() -> None:
            control(sandbox, "DELETE", "/__sandbox/calls")
            cpu_marks.append(usage(app.pids()).cpu)

        spec = {
            "flow": "oauth",
            "app_port": app.port,
            "sandbox_port": sandbox.port,
            "warmup_s": 1.0,
            "warmup_users": 16,
            "mode": "burst",
            "sizes": [self.opts.burst] * self.opts.runs,
        }
        try:
            result = run_load(
                spec,
                world.watched(target),
                budget_s=60.0 * self.opts.runs,
                between_waves=between,
                on_start=start,
            )
            last = between(self.opts.runs)
        finally:
            control(sandbox, "DELETE", "/__sandbox/faults")
        seen = [*result.get("between_waves", []), last]
        for number, wave in enumerate(result["waves"]):
            wave.update(seen[number])
            wave["app_cpu_s"] = cpu_marks[number + 1] - cpu_marks[number]
        floor_ms = self.opts.latency_ms * SEQUENTIAL_UPSTREAM_CALLS["oauth"]
        record = {"phase": "burst", "target": target, "flow": "oauth", "key": "burst"}
        record.update(result, upstream_chain_ms=floor_ms, latency_ms_per_call=self.opts.latency_ms)
        self.runs.append(record)
        walls = ", ".join(f"{w['wall_s']:.2f}" for w in result["waves"])
        errors = sum(w["errors"] for w in result["waves"])
        _progress(f"burst {target}: wave wall times {walls} s, {errors} errors")

    def profile(self, world: World) -> None:
        binary = profile.py_spy()
        if binary is None or self.opts.profile_seconds <= 0:
            self.skipped.append("profile (py-spy is not installed: make install)")
            return
        seconds = self.opts.profile_seconds
        for target in self.opts.profile_targets.split(","):
            for flow, rate in self.rates.items():
                cell = Cell("profile", target, flow, {"mode": "open", "rate": rate}, seconds, "")
                raw = self.out / f"profile-{target}-{flow}.txt"
                spy: list[subprocess.Popen[bytes]] = []

                def attach(
                    pid: int = world.apps[target].pid,
                    raw: Path = raw,
                    spy: list[subprocess.Popen[bytes]] = spy,
                ) -> None:
                    spy.append(profile.record(binary, pid, seconds, raw))

                record = self.run_cell(world, cell, on_start=attach)
                if record is None:
                    continue
                self.runs.remove(record)  # py-spy's reads cost the app a little: not a figure
                _, errors = spy[0].communicate(timeout=seconds + 30)
                if spy[0].returncode != 0 or not raw.exists():
                    self.skipped.append(f"profile {target} {flow}: {errors.decode()[-200:]}")
                    continue
                summary = profile.summarize(raw, record["cpu_ms_per_flow"]["app"])
                self.profiles.setdefault(target, {})[flow] = summary

    # -- the whole run ------------------------------------------------------------------------

    def run(self) -> None:
        logs = self.out / "logs"
        with contextlib.ExitStack() as stack:
            redis_url, redis_pid = stack.enter_context(redis_server())
            redis = stack.enter_context(Redis.from_url(redis_url))
            sandbox = start_sandbox(logs)
            stack.callback(sandbox.stop)
            env = app_env(redis_url, sandbox, self.opts.log_level, self.opts.transport)
            apps = {}
            for target in FIXED_TARGETS:
                extra = dict(self.opts.bff_env) if target == "bff" else {}
                apps[target] = start_app(target, {**env, **extra}, logs)
                stack.callback(apps[target].stop)
            world = World(redis, redis_pid, sandbox, apps)
            every = (self.saturation, self.fixed, self.concurrency, self.burst, self.profile)
            phases = [phase for phase in every if phase.__name__ in self.opts.phase_list]
            for phase in (*phases, self.repeat_disturbed):
                _progress(f"phase: {phase.__name__}")
                phase(world)


def upstream_overlap(sandbox: Service) -> dict[str, Any]:
    """From the sandbox's call record: Flinks calls served and the most in flight at once."""
    calls = [c for c in control(sandbox, "GET", "/__sandbox/calls") if c.get("endpoint")]
    events = sorted(
        [(c["at"], 1) for c in calls] + [(c["at"] + c["duration_ms"] / 1000, -1) for c in calls]
    )
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return {"upstream_calls": len(calls), "upstream_peak_in_flight": peak}


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    out = Path(opts.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    for old in (*out.glob("profile-*.txt"), out / "latency.png"):
        old.unlink(missing_ok=True)
    started = time.monotonic()
    bench = Bench(opts, out)
    meta = _meta(opts)
    try:
        bench.run()
    except KeyboardInterrupt:
        _progress("interrupted: reporting what was measured")
    meta["duration_s"] = round(time.monotonic() - started, 1)
    results: dict[str, Any] = {
        "meta": meta,
        "rates": bench.rates,
        "runs": bench.runs,
        "profiles": bench.profiles,
        "skipped": bench.skipped,
    }
    results["summary"] = report.summary(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "cpu.svg").write_text(chart.svg(results))
    print(report.render(results))
    print(f"\nwrote {out / 'results.json'}, {out / 'cpu.svg'}; logs in {out / 'logs'}")
    print(f"total wall time {meta['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
