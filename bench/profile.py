"""Where an app's CPU goes: py-spy samples it during a measured run, and this sums the samples.

py-spy (PyPI) attaches to the running process from outside (ptrace; root or
CAP_SYS_PTRACE), samples its Python stacks without pausing it (`--nonblocking`) and skips idle
threads, so an event loop waiting in epoll is not sampled: the samples are a picture of CPU.
Time in C (uvloop, json, hashing, AES) is charged to the Python frame that called it.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Any

RATE_HZ = 500
_STDLIB = sysconfig.get_paths()["stdlib"] + "/"


def py_spy() -> str | None:
    """The py-spy binary of this environment (the `bench` dependency group), if installed."""
    beside = Path(sysconfig.get_paths()["scripts"]) / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(binary: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` for `seconds` into `out` (py-spy's raw format: one stack and count a line)."""
    argv = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    argv += ["--rate", str(RATE_HZ), "--format", "raw", "--output", str(out)]
    argv += ["--nonblocking", "--full-filenames", "--nolineno"]
    return subprocess.Popen(  # noqa: S603 - our own arguments
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _where(frame: str) -> tuple[str, str]:
    """`func (path)` -> (short path, package): app modules, libraries, stdlib modules."""
    name, _, path = frame.rpartition(" (")
    path = path.rstrip(")")
    if "site-packages/" in path:
        short = path.split("site-packages/", 1)[1]
        package = short.split("/", 1)[0].removesuffix(".py")
    elif path.startswith(_STDLIB):
        short = "stdlib/" + path.removeprefix(_STDLIB)
        package = "stdlib " + short.removeprefix("stdlib/").split("/", 1)[0].removesuffix(".py")
    elif "/app/" in path:
        short = "app/" + path.split("/app/", 1)[1]
        package = short.removesuffix(".py").replace("/", ".")
    else:
        short = package = path
    return f"{short}:{name}", package


def summarize(raw: Path, cpu_ms_per_flow: float, top: int = 12) -> dict[str, Any]:
    """Shares of the samples, three ways, each also in ms per flow (share x CPU per flow):
    self time by package (the leaf frame's), self time by function, and app/ functions with
    everything they call."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    app_inclusive: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_where(frame) for frame in stack.split(";")]
        leaf, package = frames[-1]
        by_package[package] += int(count)
        by_function[leaf] += int(count)
        # app/cli.py starts the server: it is under every sample, and says nothing.
        inside = {label for label, _ in frames if label.startswith("app/")}
        for label in {label for label in inside if not label.startswith("app/cli.py")}:
            app_inclusive[label] += int(count)
    total = sum(by_package.values()) or 1

    def rows(counter: Counter[str], limit: int | None) -> list[dict[str, Any]]:
        return [
            {"name": name, "share": n / total, "ms_per_flow": cpu_ms_per_flow * n / total}
            for name, n in counter.most_common(limit)
        ]

    return {
        "samples": sum(by_package.values()),
        "cpu_ms_per_flow": cpu_ms_per_flow,
        "packages": rows(by_package, None),
        "functions": rows(by_function, top),
        "app_inclusive": rows(app_inclusive, top),
    }
