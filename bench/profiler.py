"""A CPU-time sampling profiler from the standard library, for when py-spy and pyinstrument
are not installed (they are not project dependencies).

`ITIMER_PROF` fires SIGPROF every `interval` of the process's CPU time (user + system), so an
idle event loop is never sampled; the handler records the interrupted Python stack. Time spent
in C (uvloop's I/O, json, hashing, AES) is charged to the Python frame that was running or
runs next, and time inside the event loop's own C code to its `run_*` frame.

Run the BFF under it, exactly as `flinks-bff serve` (one worker: the sampler sees one process),
or the baseline with `--app baseline -- --port 9000`:

    python -m bench.profiler --out build/bench/profile -- serve --port 9000 --workers 1

SIGUSR1 starts (and resets) sampling; SIGUSR2 stops it and writes `<out>.<n>.json`.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import sysconfig
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

INTERVAL = 0.001
_STDLIB = sysconfig.get_paths()["stdlib"]


class Sampler:
    def __init__(self, out: str, interval: float = INTERVAL) -> None:
        self.out = out
        self.interval = interval
        self.counts: Counter[tuple[CodeType, ...]] = Counter()
        self.dumps = 0
        self.cpu_at_start = 0.0

    def install(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.signal(signal.SIGUSR1, self._start)
        signal.signal(signal.SIGUSR2, self._stop)

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        stack = []
        while frame is not None:
            stack.append(frame.f_code)
            frame = frame.f_back
        self.counts[tuple(stack)] += 1

    def _start(self, signum: int, frame: FrameType | None) -> None:
        self.counts.clear()
        self.cpu_at_start = _cpu()
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        self.dumps += 1
        stacks = [[[_label(code) for code in stack], n] for stack, n in self.counts.items()]
        data = {"interval_s": self.interval, "cpu_s": _cpu() - self.cpu_at_start, "stacks": stacks}
        path = Path(f"{self.out}.{self.dumps}.json")
        path.with_suffix(".tmp").write_text(json.dumps(data))
        path.with_suffix(".tmp").rename(path)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _short(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    if filename.startswith(_STDLIB):
        return "stdlib/" + filename[len(_STDLIB) :].lstrip("/")
    cwd = str(Path.cwd()) + "/"
    return filename[len(cwd) :] if filename.startswith(cwd) else filename


def _label(code: CodeType) -> str:
    return f"{_short(code.co_filename)}:{code.co_qualname}"


# -- analysis ---------------------------------------------------------------------------------


def component(label: str) -> str:
    """Who a frame belongs to: an app module, a library, or a stdlib module."""
    path = label.split(":", 1)[0]
    if path.startswith("app/"):
        return path.removesuffix(".py").replace("/", ".")
    if path.startswith("stdlib/"):
        module = path.removeprefix("stdlib/").split("/", 1)[0].removesuffix(".py")
        return f"stdlib {module}"
    return path.split("/", 1)[0].removesuffix(".py")


def _innermost_app_frame(stack: list[str]) -> str:
    for label in stack:  # leaf first
        if label.startswith("app/"):
            return label
    return "(no app frame: server, event loop)"


def summarize(path: Path, flows: int, top: int = 25) -> dict[str, Any]:
    """Shares of the CPU samples, four ways:

    - components: the leaf frame's package or module (self time by library)
    - self: the leaf function
    - app_inclusive: functions of app/ with everything they call
    - app_attributed: each sample charged to its innermost app/ frame and the leaf's package,
      e.g. "app/flinks/client.py:FlinksClient._exchange <- httpcore": what a fix would move
    """
    data = json.loads(path.read_text())
    stacks: list[tuple[list[str], int]] = [(s, n) for s, n in data["stacks"] if s]
    total = sum(n for _, n in stacks) or 1
    self_time: Counter[str] = Counter()
    app_inclusive: Counter[str] = Counter()
    attributed: Counter[str] = Counter()
    by_component: Counter[str] = Counter()
    for stack, n in stacks:
        leaf = stack[0]
        self_time[leaf] += n
        by_component[component(leaf)] += n
        attributed[f"{_innermost_app_frame(stack)} <- {component(leaf)}"] += n
        for label in set(stack):
            if label.startswith("app/"):
                app_inclusive[label] += n
    cpu_ms_per_flow = 1000 * data["cpu_s"] / flows if flows else None

    def rows(counter: Counter[str], limit: int | None = top) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "share": n / total,
                "ms_per_flow": cpu_ms_per_flow * n / total if cpu_ms_per_flow else None,
            }
            for name, n in counter.most_common(limit)
        ]

    return {
        "samples": total,
        "cpu_s": data["cpu_s"],
        "cpu_ms_per_flow": cpu_ms_per_flow,
        "components": rows(by_component, None),
        "self": rows(self_time),
        "app_inclusive": rows(app_inclusive),
        "app_attributed": rows(attributed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.profiler", description=__doc__)
    parser.add_argument("--out", required=True, help="dump prefix: <out>.<n>.json")
    parser.add_argument("--interval", type=float, default=INTERVAL, help="seconds of CPU")
    parser.add_argument("--app", choices=("bff", "baseline"), default="bff")
    parser.add_argument("serve", nargs=argparse.REMAINDER, help="-- then the app's arguments")
    args = parser.parse_args()
    Sampler(args.out, args.interval).install()
    argv = [a for a in args.serve if a != "--"]
    if args.app == "baseline":
        from bench.baseline import main as baseline_main

        sys.argv = ["bench.baseline", *argv]
        baseline_main()
        return
    from app.cli import main as bff_main

    sys.exit(bff_main(argv))


if __name__ == "__main__":
    main()
