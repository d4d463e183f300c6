"""`python -m bench.run`: the flinks-bff benchmark, end to end (`make bench`).

It starts a Redis server, the Flinks sandbox (no added latency) and, in turn, the BFF and the
bare baseline (bench/baseline.py) with 1 worker and then 2, each as its own process, and
drives them from a generator process (bench/load.py):

1. max:     each flow (OAuth, Connect, token minting) in a closed loop at a fixed concurrency:
            flows/s, latency percentiles, errors, CPU per flow of every process
2. sweep:   (1 worker) each flow at fixed arrival rates, fractions of that maximum: latency
            against load, and the p99 at half the maximum
3. latency: (1 worker) the sandbox adds 200 ms to every Flinks call; waves of OAuth flows
            started at once (100, then 500 twice): wall time against the upstream floor,
            in-flight upstream calls, and the app's memory before, between, after, at its peak
4. profile: the BFF (1 worker) under a stdlib CPU sampler (bench/profiler.py), per flow

Output: tables on stdout, `<out>/results.json`, `<out>/latency.png`, logs in `<out>/logs/`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis import Redis

from bench import chart, report
from bench.flows import SEQUENTIAL_UPSTREAM_CALLS
from bench.measure import Watched, run_load
from bench.procs import (
    Service,
    app_env,
    control,
    redis_server,
    rss_bytes,
    start_baseline,
    start_bff,
    start_ceiling,
    start_sandbox,
)
from bench.profiler import summarize

TARGETS = ("bff", "baseline")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--duration", type=float, default=5.0, help="seconds per max-throughput run (5)")
    add("--warmup", type=float, default=1.5, help="seconds of warm-up before each run (1.5)")
    add("--users", type=int, default=32, help="concurrency of the max-throughput runs (32)")
    add("--flows", default="oauth,connect,token", help="flows to run (oauth,connect,token)")
    add("--workers", default="1,2", help="worker counts to run (1,2)")
    add("--sweep", default="0.25,0.5,0.75", help="rates, as fractions of the max ('' = none)")
    add("--sweep-duration", type=float, default=4.0, help="seconds per sweep point (4)")
    add(
        "--half-duration",
        type=float,
        default=10.0,
        help="seconds of the 50%% point, whose p99 is a target: more flows, a steadier p99 (10)",
    )
    add(
        "--burst",
        default="100,500,500",
        help="OAuth flows started at once, per wave of the latency run (100,500,500; '' = none)",
    )
    add("--latency-ms", type=float, default=200.0, help="sandbox latency per call (200)")
    add("--profile-seconds", type=float, default=4.0, help="per flow (4; 0 = no profile)")
    add("--log-level", default="INFO", help="BFF_LOG_LEVEL of the BFF under test (INFO)")
    add("--out", default="build/bench", help="output folder (build/bench)")
    add("--budget", type=float, default=540.0, help="seconds; later runs are skipped past it")
    add("--phases", default="max,sweep,latency,profile", help="what to run (sweep needs max)")
    add("--quick", action="store_true", help="a smoke run: short runs, small waves, 1 worker")
    return parser


def _options(argv: list[str] | None) -> argparse.Namespace:
    opts = _parser().parse_args(argv)
    if opts.quick:
        opts.duration, opts.warmup, opts.sweep_duration, opts.half_duration = 2.0, 0.5, 1.5, 2.0
        opts.sweep, opts.burst, opts.profile_seconds = "0.5", "50,100", 2.0
        opts.workers = "1"
    opts.flow_list = [f for f in opts.flows.split(",") if f]
    opts.worker_list = [int(w) for w in opts.workers.split(",") if w]
    opts.fractions = [float(f) for f in opts.sweep.split(",") if f]
    opts.waves = [int(n) for n in opts.burst.split(",") if n]
    opts.phase_set = set(opts.phases.split(","))
    if "sweep" not in opts.phase_set or "max" not in opts.phase_set:
        opts.fractions = []
    if "latency" not in opts.phase_set:
        opts.waves = []
    if "profile" not in opts.phase_set:
        opts.profile_seconds = 0.0
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
        "options": {k: v for k, v in vars(opts).items() if not k.endswith(("_list", "_set"))},
    }


class Bench:
    def __init__(self, opts: argparse.Namespace, out: Path) -> None:
        self.opts = opts
        self.out = out
        self.logs = out / "logs"
        self.runs: list[dict[str, Any]] = []
        self.profiles: dict[str, Any] = {}
        self.ceiling: dict[str, Any] = {}
        self.deadline = time.monotonic() + opts.budget
        self.skipped: list[str] = []

    def fits(self, what: str, seconds: float) -> bool:
        """Whether `what` (about `seconds` long) still fits in the time budget."""
        if time.monotonic() + seconds <= self.deadline:
            return True
        self.skipped.append(what)
        _progress(f"skipped {what}: over the --budget of {self.opts.budget:.0f} s")
        return False

    # -- shared pieces ----------------------------------------------------------------------

    def reset(self, sandbox: Service, redis: Redis) -> None:
        control(sandbox, "POST", "/__sandbox/reset")
        redis.flushall()

    def spec(self, flow: str, app: Service, sandbox: Service, **mode: Any) -> dict[str, Any]:
        return {
            "flow": flow,
            "app_port": app.port,
            "sandbox_port": sandbox.port,
            "warmup_s": self.opts.warmup,
            "warmup_users": 8,
            **mode,
        }

    def record(
        self, phase: str, target: str, workers: int, flow: str, result: dict[str, Any]
    ) -> None:
        self.runs.append(
            {"phase": phase, "target": target, "workers": workers, "flow": flow, **result}
        )

    # -- phases -----------------------------------------------------------------------------

    def generator_ceiling(self, sandbox: Service) -> None:
        server = start_ceiling(self.logs)
        try:
            spec = self.spec("ping", server, sandbox, mode="closed", users=32, seconds=3.0)
            result = run_load(spec, Watched(server, {}), budget_s=10)
        finally:
            server.stop()
        per_request = result["generator"]["cpu_us_per_request"]
        self.ceiling = {
            "requests_per_s": result["flows_per_s"],
            "generator_cpu_us_per_request": per_request,
            "server_cpu_us_per_request": 1e6 * result["cpu_s"]["app"] / result["completed"],
            "one_core_requests_per_s": 1e6 / per_request if per_request else None,
        }
        _progress(
            f"generator ceiling: {result['flows_per_s']:.0f} req/s measured, "
            f"{per_request:.0f} us CPU per request"
        )

    def max_runs(
        self, target: str, workers: int, app: Service, sandbox: Service, redis: Redis, pid: int
    ) -> dict[str, float]:
        watched = Watched(app, {"sandbox": sandbox.pid, "redis": pid})
        maxima = {}
        for flow in self.opts.flow_list:
            if not self.fits(f"max {target} w{workers} {flow}", self.opts.duration + 5):
                continue
            self.reset(sandbox, redis)
            spec = self.spec(
                flow, app, sandbox, mode="closed", users=self.opts.users, seconds=self.opts.duration
            )
            result = run_load(spec, watched, budget_s=self.opts.duration + self.opts.warmup)
            self.record("max", target, workers, flow, result)
            maxima[flow] = result["flows_per_s"]
            _progress(
                f"{target} w{workers} {flow}: {result['flows_per_s']:.1f} flows/s, "
                f"p99 {result['latency_ms'].get('p99', float('nan')):.1f} ms, "
                f"{result['errors']} errors, app {result['cpu_ms_per_flow']['app']:.2f} ms CPU/flow"
            )
        return maxima

    def sweep(
        self,
        target: str,
        app: Service,
        sandbox: Service,
        redis: Redis,
        pid: int,
        maxima: dict[str, float],
    ) -> None:
        watched = Watched(app, {"sandbox": sandbox.pid, "redis": pid})
        for flow in self.opts.flow_list:
            for fraction in self.opts.fractions:
                if flow not in maxima or not self.fits(
                    f"sweep {target} {flow} {fraction:.0%}", self.opts.sweep_duration + 3
                ):
                    continue
                rate = max(1.0, fraction * maxima[flow])
                seconds = self.opts.half_duration if fraction == 0.5 else self.opts.sweep_duration
                self.reset(sandbox, redis)
                spec = self.spec(flow, app, sandbox, mode="open", rate=rate, seconds=seconds)
                spec["warmup_s"] = min(self.opts.warmup, 1.0)
                result = run_load(spec, watched, budget_s=seconds + 2)
                result["fraction"] = fraction
                self.record("sweep", target, 1, flow, result)
                _progress(
                    f"{target} {flow} at {fraction:.0%} ({rate:.1f}/s): "
                    f"p99 {result['latency_ms'].get('p99', float('nan')):.1f} ms, "
                    f"{result['errors']} errors"
                )

    def latency_run(
        self, target: str, app: Service, sandbox: Service, redis: Redis, pid: int
    ) -> None:
        if not self.fits(f"latency run {target}", sum(self.opts.waves) / 20):
            return
        self.reset(sandbox, redis)
        control(sandbox, "PATCH", "/__sandbox/faults", {"latency_ms": self.opts.latency_ms})
        watched = Watched(app, {"sandbox": sandbox.pid, "redis": pid})

        def clear_calls() -> None:
            control(sandbox, "DELETE", "/__sandbox/calls")

        def between(wave: int) -> dict[str, Any]:
            seen = {"wave": wave, "rss": rss_bytes(app.pids()), "app_cpu_s": app.cpu()}
            seen.update(upstream_overlap(sandbox))
            clear_calls()
            return seen

        def start() -> None:
            clear_calls()
            cpu_at_start.append(app.cpu())

        cpu_at_start: list[float] = []

        spec = self.spec("oauth", app, sandbox, mode="burst", sizes=self.opts.waves)
        spec["warmup_s"], spec["warmup_users"] = 1.0, 16
        try:
            result = run_load(
                spec,
                watched,
                budget_s=60.0 * len(self.opts.waves),
                between_waves=between,
                on_start=start,
            )
            last = {"wave": len(self.opts.waves), "rss": result["rss"]["after"]}
            last["app_cpu_s"] = app.cpu()
            result.setdefault("between_waves", []).append({**last, **upstream_overlap(sandbox)})
        finally:
            control(sandbox, "DELETE", "/__sandbox/faults")
        marks = [*cpu_at_start, *(w["app_cpu_s"] for w in result["between_waves"])]
        for wave, (a, b) in zip(result["waves"], itertools.pairwise(marks), strict=False):
            wave["app_cpu_s"] = b - a
        result["latency_ms_per_call"] = self.opts.latency_ms
        result["upstream_floor_ms"] = self.opts.latency_ms * SEQUENTIAL_UPSTREAM_CALLS["oauth"]
        self.record("latency", target, 1, "oauth", result)
        walls = ", ".join(f"{w['wall_s']:.2f}" for w in result["waves"])
        _progress(f"{target} latency run: wave wall times {walls} s")

    def profile(self, env: dict[str, str], sandbox: Service, redis: Redis, pid: int) -> None:
        """The BFF, then the baseline, each under the sampler: each flow in a closed loop
        and (BFF) one burst with upstream latency, where httpx's pool costs the most."""
        for old in self.out.glob("profile-*.json"):
            old.unlink()
        for target in TARGETS:
            prefix = self.out / f"profile-{target}"
            if target == "bff":
                app = start_bff(env, 1, self.logs, profile=prefix)
            else:
                app = start_baseline(env, 1, self.logs, profile=prefix)
            try:
                self.profiles[target] = self._profile_app(target, app, prefix, sandbox, redis, pid)
            finally:
                app.stop()

    def _profile_app(
        self, target: str, app: Service, prefix: Path, sandbox: Service, redis: Redis, pid: int
    ) -> dict[str, Any]:
        watched = Watched(app, {"sandbox": sandbox.pid, "redis": pid})
        profiles: dict[str, Any] = {}
        number = 0

        def profiled(label: str, spec: dict[str, Any], budget: float) -> dict[str, Any]:
            nonlocal number
            number += 1
            result = run_load(
                spec,
                watched,
                budget_s=budget,
                on_start=lambda: os.kill(app.pid, signal.SIGUSR1),
                on_stop=lambda: os.kill(app.pid, signal.SIGUSR2),
            )
            if "waves" in result:
                result["flows_per_s"] = result["completed"] / result["waves"][0]["wall_s"]
            profiles[label] = _profile_summary(Path(f"{prefix}.{number}.json"), result)
            _progress(f"profiled {target} {label}: {profiles[label]['samples']} samples")
            return result

        seconds = self.opts.profile_seconds
        for flow in self.opts.flow_list:
            if self.fits(f"profile {target} {flow}", seconds + 5):
                self.reset(sandbox, redis)
                mode = {"mode": "closed", "users": self.opts.users, "seconds": seconds}
                profiled(flow, self.spec(flow, app, sandbox, **mode), seconds + self.opts.warmup)
        size = min(self.opts.waves or [0])
        if target == "bff" and size and "oauth" in self.opts.flow_list:
            if not self.fits(f"profile {target} burst", 30):
                return profiles
            self.reset(sandbox, redis)
            control(sandbox, "PATCH", "/__sandbox/faults", {"latency_ms": self.opts.latency_ms})
            spec = self.spec("oauth", app, sandbox, mode="burst", sizes=[size])
            spec["warmup_s"], spec["warmup_users"] = 1.0, 16
            label = f"oauth, {size} at once, +{self.opts.latency_ms:.0f} ms upstream"
            try:
                profiled(label, spec, 60)
            finally:
                control(sandbox, "DELETE", "/__sandbox/faults")
        return profiles

    # -- the whole run ------------------------------------------------------------------------

    def run(self) -> None:
        opts = self.opts
        with contextlib.ExitStack() as stack:
            redis_url, redis_pid = stack.enter_context(redis_server())
            redis = stack.enter_context(Redis.from_url(redis_url))
            sandbox = start_sandbox(self.logs)
            stack.callback(sandbox.stop)
            env = app_env(redis_url, sandbox, opts.log_level)
            self.generator_ceiling(sandbox)
            # 1 worker first (every phase), then the profile, then the other worker counts:
            # if the time budget runs out, what goes is the least telling.
            for workers in sorted(opts.worker_list, key=lambda w: w != 1):
                if workers != 1 and opts.profile_seconds > 0 and not self.profiles:
                    self.profile(env, sandbox, redis, redis_pid)
                for target in TARGETS:
                    if "max" not in opts.phase_set and (workers != 1 or not opts.waves):
                        continue
                    with _serving(target, env, workers, self.logs) as app:
                        maxima = {}
                        if "max" in opts.phase_set:
                            maxima = self.max_runs(target, workers, app, sandbox, redis, redis_pid)
                        if workers == 1 and opts.fractions:
                            self.sweep(target, app, sandbox, redis, redis_pid, maxima)
                        if workers == 1 and opts.waves:
                            self.latency_run(target, app, sandbox, redis, redis_pid)
            if opts.profile_seconds > 0 and not self.profiles:
                self.profile(env, sandbox, redis, redis_pid)


def _profile_summary(dump: Path, result: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while not dump.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the profiled process writes it on SIGUSR2
    summary = summarize(dump, result["completed"])
    summary["flows_per_s"] = result["flows_per_s"]
    summary["cpu_ms_per_flow_measured"] = result["cpu_ms_per_flow"]["app"]
    return summary


@contextlib.contextmanager
def _serving(target: str, env: dict[str, str], workers: int, logs: Path) -> Iterator[Service]:
    _progress(f"starting {target} with {workers} worker(s)")
    app = (
        start_bff(env, workers, logs, None)
        if target == "bff"
        else start_baseline(env, workers, logs)
    )
    try:
        yield app
    finally:
        app.stop()


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
    started = time.monotonic()
    bench = Bench(opts, out)
    meta = _meta(opts)
    try:
        bench.run()
    except KeyboardInterrupt:
        _progress("interrupted: reporting what was measured")
    meta["duration_s"] = round(time.monotonic() - started, 1)
    results = {
        "meta": meta,
        "ceiling": bench.ceiling,
        "runs": bench.runs,
        "profiles": bench.profiles,
        "skipped": bench.skipped,
    }
    results["targets"] = report.targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    chart_note = chart.write_chart(results, out / "latency.png")
    print(report.render(results))
    print(f"\nwrote {out / 'results.json'}; {chart_note}; logs in {out / 'logs'}")
    print(f"total wall time {meta['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
