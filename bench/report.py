"""The printed tables and the verdicts against the issue's targets."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
# The targets.
MIN_THROUGHPUT_RATIO = 0.7
MAX_P99_AT_HALF_MS = 50.0
MAX_OAUTH_CPU_MS = 3.0


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _fmt(value: Any, spec: str = ".1f") -> str:
    number = _num(value)
    if number is None:
        return "-"
    return format(round(number), spec) if spec == "d" else format(number, spec)


def _ratio(a: Any, b: Any) -> str:
    x, y = _num(a), _num(b)
    if x is None or y is None:
        return "-"
    if y == 0:
        return "-" if x == 0 else "inf"
    return f"{x / y:.2f}x"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(r) for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def _runs(results: dict[str, Any], phase: str) -> list[dict[str, Any]]:
    return [r for r in results["runs"] if r["phase"] == phase]


def _find(runs: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for run in runs:
        if all(run.get(k) == v for k, v in match.items()):
            return run
    return None


# -- sections ---------------------------------------------------------------------------------

Figure = tuple[str, Callable[[dict[str, Any]], Any], str]
_MAX_FIGURES: tuple[Figure, ...] = (
    ("flows/s", lambda r: r["flows_per_s"], ".1f"),
    ("p50 ms", lambda r: r["latency_ms"].get("p50"), ".1f"),
    ("p95 ms", lambda r: r["latency_ms"].get("p95"), ".1f"),
    ("p99 ms", lambda r: r["latency_ms"].get("p99"), ".1f"),
    ("errors", lambda r: r["errors"], "d"),
    ("app CPU ms/flow", lambda r: r["cpu_ms_per_flow"]["app"], ".2f"),
    ("sandbox ms/flow", lambda r: r["cpu_ms_per_flow"].get("sandbox"), ".2f"),
    ("redis ms/flow", lambda r: r["cpu_ms_per_flow"].get("redis"), ".2f"),
    ("gen ms/flow", lambda r: r["cpu_ms_per_flow"].get("generator"), ".2f"),
    ("app req p99 ms", lambda r: r["app_request_ms"].get("p99"), ".1f"),
    ("others' CPU %", lambda r: _others(r), ".0f"),
)


def _others(run: dict[str, Any]) -> float | None:
    share = _num(run.get("machine", {}).get("others_share"))
    return None if share is None else 100 * share


def _max_section(results: dict[str, Any]) -> str:
    runs = _runs(results, "max")
    users = results["meta"]["options"]["users"]
    rows = []
    for workers in sorted({r["workers"] for r in runs}):
        for flow in dict.fromkeys(r["flow"] for r in runs):
            bff = _find(runs, target="bff", workers=workers, flow=flow)
            base = _find(runs, target="baseline", workers=workers, flow=flow)
            for name, run in (("bff", bff), ("baseline", base)):
                if run is not None:
                    cells = [_fmt(get(run), spec) for _, get, spec in _MAX_FIGURES]
                    rows.append([flow, str(workers), name, *cells])
            if bff is not None and base is not None:
                ratios = [
                    _ratio(get(bff), get(base)) if not name.startswith("others") else "-"
                    for name, get, _ in _MAX_FIGURES
                ]
                rows.append([flow, str(workers), "bff/baseline", *ratios])
    headers = ["flow", "w", "target", *(name for name, _, _ in _MAX_FIGURES)]
    title = (
        f"1. Maximum throughput: closed loop, {users} concurrent flows, zero-latency sandbox "
        "(CPU per flow from /proc of each process tree)"
    )
    return f"{title}\n{_table(headers, rows)}"


def _sweep_section(results: dict[str, Any]) -> str:
    rows = []
    for run in _runs(results, "sweep"):
        lat = run["latency_ms"]
        rows.append(
            [
                run["flow"],
                run["target"],
                f"{run['fraction']:.0%}",
                _fmt(run["offered_per_s"]),
                _fmt(run["flows_per_s"]),
                _fmt(lat.get("p50")),
                _fmt(lat.get("p95")),
                _fmt(lat.get("p99")),
                _fmt(run["errors"], "d"),
                _fmt(run["cpu_ms_per_flow"]["app"], ".2f"),
                _fmt(_others(run), ".0f"),
            ]
        )
    headers = ["flow", "target", "load", "offered/s", "flows/s", "p50 ms", "p95 ms", "p99 ms"]
    headers += ["errors", "app CPU ms/flow", "others' CPU %"]
    title = (
        "2. Latency against load: open loop (fixed arrival rate, fraction of each max), 1 worker"
    )
    return f"{title}\n{_table(headers, rows)}"


def _latency_section(results: dict[str, Any]) -> str:
    rows = []
    notes = []
    for run in _runs(results, "latency"):
        floor = run["upstream_floor_ms"]
        between = {w["wave"]: w for w in run.get("between_waves", [])}
        for number, wave in enumerate(run["waves"], start=1):
            seen = between.get(number, {})
            users = wave["completed"] + wave["errors"]
            rows.append(
                [
                    run["target"],
                    str(number),
                    str(users),
                    _fmt(wave["errors"], "d"),
                    _fmt(wave["wall_s"], ".2f"),
                    _fmt(wave["latency_ms"].get("p50"), ".0f"),
                    _fmt(wave["latency_ms"].get("p99"), ".0f"),
                    _fmt(floor, ".0f"),
                    _fmt(wave.get("app_cpu_s"), ".1f"),
                    _fmt(users * floor / 1000, ".0f"),
                    _fmt(seen.get("upstream_peak_in_flight"), "d"),
                    _fmt(_num(seen.get("rss")) and seen["rss"] / MIB, ".1f"),
                ]
            )
        rss = run["rss"]
        notes.append(
            f"   {run['target']}: RSS before {rss['before'] / MIB:.1f} MiB, after "
            f"{rss['after'] / MIB:.1f} MiB, peak sampled {rss['peak'] / MIB:.1f} MiB, "
            f"VmHWM {rss['hwm'] / MIB:.1f} MiB; app CPU {run['cpu_s']['app']:.2f} s for "
            f"{run['completed']} flows ({run['cpu_ms_per_flow']['app']:.2f} ms/flow)"
        )
    if not rows:
        return "3. Latency run: not run"
    headers = ["target", "wave", "flows", "errors", "wall s", "p50 ms", "p99 ms", "floor ms"]
    headers += ["app CPU s", "serial s", "peak upstream", "RSS MiB"]
    run0 = _runs(results, "latency")[0]
    title = (
        f"3. Overlap: sandbox +{run0['latency_ms_per_call']:.0f} ms per Flinks call, waves of "
        "OAuth flows started at once, 1 worker\n"
        "   floor = sequential Flinks calls per flow x latency; app CPU = the app's CPU seconds "
        "in the wave\n   (with 1 worker, a floor on wall time too); serial = flows x floor (no "
        "overlap at all);\n   peak upstream = most Flinks calls in flight at once (sandbox call "
        "record); RSS = the app's after the wave"
    )
    return f"{title}\n{_table(headers, rows)}\n" + "\n".join(notes)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    verdicts: list[dict[str, Any]] = []
    maxima = _runs(results, "max")
    for run in maxima:
        if run["target"] != "bff":
            continue
        base = _find(maxima, target="baseline", workers=run["workers"], flow=run["flow"])
        if base is None or not base["flows_per_s"]:
            continue
        ratio = run["flows_per_s"] / base["flows_per_s"]
        verdicts.append(
            {
                "target": f"throughput {run['flow']} w{run['workers']} >= "
                f"{MIN_THROUGHPUT_RATIO}x baseline",
                "value": f"{ratio:.3f}x ({run['flows_per_s']:.1f} vs {base['flows_per_s']:.1f}/s)",
                "met": ratio >= MIN_THROUGHPUT_RATIO,
            }
        )
    for run in _runs(results, "sweep"):
        if run["target"] == "bff" and run["fraction"] == 0.5:
            p99 = _num(run["latency_ms"].get("p99"))
            verdicts.append(
                {
                    "target": f"p99 {run['flow']} at half max < {MAX_P99_AT_HALF_MS:.0f} ms",
                    "value": f"{_fmt(p99)} ms at {run['offered_per_s']:.1f}/s "
                    f"(n={run['completed']}), {run['errors']} errors",
                    "met": p99 is not None and p99 < MAX_P99_AT_HALF_MS and not run["errors"],
                }
            )
    for run in maxima:
        if run["target"] == "bff" and run["flow"] == "oauth":
            cpu = run["cpu_ms_per_flow"]["app"]
            verdicts.append(
                {
                    "target": f"BFF CPU per OAuth flow w{run['workers']} <= {MAX_OAUTH_CPU_MS} ms",
                    "value": f"{cpu:.2f} ms",
                    "met": cpu <= MAX_OAUTH_CPU_MS,
                }
            )
    return verdicts


def _targets_section(results: dict[str, Any]) -> str:
    rows = [[v["target"], v["value"], "met" if v["met"] else "NOT MET"] for v in results["targets"]]
    return "4. Targets\n" + _table(["target", "measured", "verdict"], rows)


def _profile_section(results: dict[str, Any], top: int = 12) -> str:
    bff = results["profiles"].get("bff", {})
    if not bff:
        return "5. Profile: not run"
    parts = [
        "5. Where the BFF's CPU goes (stdlib SIGPROF sampler, 1 worker, closed loop at "
        f"{results['meta']['options']['users']} flows;\n   py-spy and pyinstrument are not "
        "installed; ms/flow = share x the CPU per flow measured under the sampler)"
    ]
    baseline = results["profiles"].get("baseline", {})
    for flow, profile in bff.items():
        parts.append(
            f"\n   {flow}: {profile['samples']} samples, {profile['flows_per_s']:.1f} flows/s "
            f"under the sampler, {profile['cpu_ms_per_flow_measured']:.2f} ms CPU/flow"
        )
        if flow in baseline:
            parts.append(_delta(flow, profile, baseline[flow], top))
        for kind, label in (
            ("components", "self time by package"),
            ("app_attributed", "charged to the innermost app/ frame <- leaf package"),
            ("app_inclusive", "app/ functions, inclusive"),
            ("self", "self time by function"),
        ):
            shown = [r for r in profile[kind] if not r["name"].startswith("app/cli.py")]
            rows = [
                [f"{100 * r['share']:.1f}%", _fmt(r["ms_per_flow"], ".2f"), r["name"]]
                for r in shown[:top]
            ]
            parts.append(
                f"   {flow}, {label}:\n" + _indent(_table(["share", "ms/flow", "where"], rows))
            )
    return "\n".join(parts)


def _delta(flow: str, bff: dict[str, Any], baseline: dict[str, Any], top: int) -> str:
    """Per package: the BFF's CPU per flow against the baseline's, biggest excess first."""
    ours = {r["name"]: r["ms_per_flow"] or 0.0 for r in bff["components"]}
    floor = {r["name"]: r["ms_per_flow"] or 0.0 for r in baseline["components"]}
    names = sorted(set(ours) | set(floor), key=lambda n: floor.get(n, 0) - ours.get(n, 0))
    rows = [
        [
            name,
            _fmt(ours.get(name, 0.0), ".2f"),
            _fmt(floor.get(name, 0.0), ".2f"),
            f"{ours.get(name, 0.0) - floor.get(name, 0.0):+.2f}",
        ]
        for name in names[:top]
    ]
    total = [
        "all",
        _fmt(bff["cpu_ms_per_flow_measured"], ".2f"),
        _fmt(baseline["cpu_ms_per_flow_measured"], ".2f"),
        f"{bff['cpu_ms_per_flow_measured'] - baseline['cpu_ms_per_flow_measured']:+.2f}",
    ]
    table = _table(
        ["package (self time)", "BFF ms/flow", "baseline ms/flow", "BFF extra"], [total, *rows]
    )
    return f"   {flow}, the BFF over the baseline, by package:\n" + _indent(table)


def _indent(text: str, by: str = "     ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _errors_section(results: dict[str, Any]) -> str:
    lines = []
    for run in results["runs"]:
        kinds = run.get("error_kinds") or {}
        for wave in run.get("waves", []):
            for kind, n in (wave.get("error_kinds") or {}).items():
                kinds[kind] = kinds.get(kind, 0) + n
        if kinds:
            where = f"{run['phase']} {run['target']} w{run['workers']} {run['flow']}"
            lines.append(f"   {where}: " + ", ".join(f"{k} x{n}" for k, n in kinds.items()))
    return "Errors by kind\n" + ("\n".join(lines) if lines else "   none")


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    head = [
        f"flinks-bff benchmark: {meta['cpus']} CPUs, Python {meta['python']}, commit "
        f"{meta['commit']}, {meta.get('duration_s', 0):.0f} s",
    ]
    if meta["app_files_uncommitted"]:
        head.append(
            f"   (app/ has {len(meta['app_files_uncommitted'])} uncommitted changes: the BFF "
            "measured is the work tree as it was during the run)"
        )
    ceiling = results["ceiling"]
    if ceiling:
        head.append(
            f"   generator ceiling: {ceiling['requests_per_s']:.0f} req/s against a canned "
            f"server, {ceiling['generator_cpu_us_per_request']:.0f} us generator CPU per request "
            f"(~{_fmt(ceiling['one_core_requests_per_s'], '.0f')} req/s on a whole core)"
        )
    busy = [r for r in results["runs"] if (_others(r) or 0) >= 10]
    if busy:
        head.append(
            f"   WARNING: in {len(busy)} of {len(results['runs'])} runs other processes used 10% "
            'or more of the machine (column "others\' CPU %"): those figures are disturbed'
        )
    if results.get("skipped"):
        head.append("   skipped (over the time budget): " + ", ".join(results["skipped"]))
    sections = [
        "\n".join(head),
        _max_section(results),
        _sweep_section(results),
        _latency_section(results),
        _targets_section(results),
        _errors_section(results),
        _profile_section(results),
    ]
    return "\n\n".join(sections)


def main() -> None:
    """`python -m bench.report build/bench/results.json`: the tables again, from a results file."""
    results = json.loads(
        Path(sys.argv[1] if len(sys.argv) > 1 else "build/bench/results.json").read_text()
    )
    results["targets"] = targets(results)
    print(render(results))


if __name__ == "__main__":
    main()
