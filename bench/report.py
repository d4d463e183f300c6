"""The figures (median and spread of each cell's runs), the printed tables, and the verdicts
against issue 18's targets. `python -m bench.report [results.json]` prints them again."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.flows import APP_REQUESTS
from bench.stats import figure

MIB = 1024 * 1024
MIN_RUNS = 3
# Issue 18's targets.
MAX_CPU_MS = {"oauth": 6.0, "connect": 6.0}
MAX_CPU_OVER_BASELINE = 1.2
MAX_CPU_GROWTH = 1.3  # CPU per flow at the most flows in flight over that at the fewest
MAX_BURST_OVER_CHAIN = 3.0
MAX_P99_MS = 25.0
MAX_GENERATOR_SHARE = 0.10  # of the BFF's CPU per request

Run = dict[str, Any]
FIGURES: dict[str, Callable[[Run], Any]] = {
    "flows_per_s": lambda r: r["flows_per_s"],
    "cpu_app": lambda r: r["cpu_ms_per_flow"]["app"],
    "cpu_sandbox": lambda r: r["cpu_ms_per_flow"]["sandbox"],
    "cpu_redis": lambda r: r["cpu_ms_per_flow"]["redis"],
    "cpu_generator": lambda r: r["cpu_ms_per_flow"]["generator"],
    "generator_us_per_request": lambda r: r["generator"]["cpu_us_per_request"],
    "p50": lambda r: r["latency_ms"].get("p50"),
    "p99": lambda r: r["latency_ms"].get("p99"),
    "wait_app": lambda r: r["wait_ms_per_flow"]["app"],
    "wait_chain": lambda r: sum(r["wait_ms_per_flow"].values()),
    "errors": lambda r: r["errors"],
}


def _cell_of(run: Run) -> tuple[str, str, str, str]:
    return run["phase"], run["target"], run["flow"], run["key"]


def clean(runs: list[Run], phase: str, target: str, flow: str) -> list[Run]:
    """A cell's runs that count: the undisturbed ones when there are enough, else all."""
    mine = [r for r in runs if (r["phase"], r["target"], r["flow"]) == (phase, target, flow)]
    quiet = [r for r in mine if not r["machine"]["disturbed"]]
    return quiet if len(quiet) >= MIN_RUNS else mine


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per cell (phase, app, flow, load): each figure's median, min and max."""
    runs = [r for r in results["runs"] if r["phase"] != "burst"]
    cells: list[dict[str, Any]] = []
    for phase, target, flow, key in dict.fromkeys(_cell_of(r) for r in runs):
        mine = [r for r in runs if _cell_of(r) == (phase, target, flow, key)]
        quiet = [r for r in mine if not r["machine"]["disturbed"]]
        used = quiet if len(quiet) >= MIN_RUNS else mine
        cells.append(
            {
                "phase": phase,
                "target": target,
                "flow": flow,
                "key": key,
                "runs": len(mine),
                "disturbed_runs": len(mine) - len(quiet),
                "disturbed": len(used) > len(quiet) or len(used) < MIN_RUNS,
                **{name: figure([get(r) for r in used]) for name, get in FIGURES.items()},
            }
        )
    return cells


def _cell(results: dict[str, Any], phase: str, target: str, flow: str) -> dict[str, Any] | None:
    cells: list[dict[str, Any]] = results["summary"]
    for cell in cells:
        if (cell["phase"], cell["target"], cell["flow"]) == (phase, target, flow):
            return cell
    return None


def _median(cell: dict[str, Any] | None, name: str) -> float | None:
    value = None if cell is None else cell.get(name)
    return None if value is None else float(value["median"])


# -- formatting -------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".1f") -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return format(round(value), "d") if spec == "d" else format(value, spec)


def _spread(cell: dict[str, Any] | None, name: str, spec: str = ".1f") -> str:
    """`median [min-max]` of a figure over its runs; `*` marks a cell with disturbed runs."""
    value = None if cell is None else cell.get(name)
    if value is None:
        return "-"
    mark = "*" if cell and cell["disturbed"] else ""
    text = f"{_fmt(value['median'], spec)} [{_fmt(value['min'], spec)}-{_fmt(value['max'], spec)}]"
    return text + mark


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(r) for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _flows(results: dict[str, Any], phase: str) -> list[str]:
    return list(dict.fromkeys(c["flow"] for c in results["summary"] if c["phase"] == phase))


def _targets_of(results: dict[str, Any], phase: str) -> list[str]:
    return list(dict.fromkeys(c["target"] for c in results["summary"] if c["phase"] == phase))


# -- sections ---------------------------------------------------------------------------------


def _headline(results: dict[str, Any]) -> str:
    rows = []
    for flow in _flows(results, "fixed"):
        apps = ("bff", "fastapi", "baseline", "floor")
        cells = {t: _cell(results, "fixed", t, flow) for t in apps}
        bff = _median(cells["bff"], "cpu_app")
        base = _median(cells["baseline"], "cpu_app")
        rows.append(
            [
                flow,
                _fmt(results["rates"].get(flow)),
                *(_spread(cells[t], "cpu_app", ".2f") for t in apps),
                _ratio(bff, base),
                _ratio(bff, _median(cells["floor"], "cpu_app")),
                _ratio(_median(cells["fastapi"], "cpu_app"), base),
            ]
        )
    headers = [
        "flow",
        "flows/s",
        "BFF",
        "FastAPI",
        "baseline",
        "floor",
        "BFF/baseline",
        "BFF/floor",
        "FastAPI/baseline",
    ]
    title = (
        "1. CPU ms per flow of each app at one fixed rate (half the BFF's saturated flows/s),\n"
        "   from /proc; median [lowest-highest] of the runs. FastAPI: the baseline behind\n"
        "   FastAPI routes (bench/framework.py), what the framework costs with no code of ours"
    )
    return f"{title}\n{_table(headers, rows)}"


def _latency(results: dict[str, Any]) -> str:
    rows = []
    for flow in _flows(results, "fixed"):
        for target in _targets_of(results, "fixed"):
            cell = _cell(results, "fixed", target, flow)
            rows.append(
                [
                    flow,
                    target,
                    _spread(cell, "p50"),
                    _spread(cell, "p99"),
                    _spread(cell, "wait_app", ".2f"),
                    _spread(cell, "wait_chain", ".2f"),
                    _spread(cell, "cpu_sandbox", ".2f"),
                    _spread(cell, "cpu_redis", ".2f"),
                    _fmt(cell and cell["errors"] and cell["errors"]["max"], "d"),
                ]
            )
    headers = ["flow", "app", "p50 ms", "p99 ms", "app CPU wait", "chain CPU wait"]
    headers += ["sandbox CPU", "redis CPU", "errors"]
    title = (
        "2. Latency at the same fixed rate, and how long each flow waited for a CPU (schedstat\n"
        "   run-queue wait, ms per flow: the app alone, and the app + sandbox + Redis +\n"
        "   generator). A p99 far above p50 with little wait is lost overlap, not a busy CPU."
    )
    return f"{title}\n{_table(headers, rows)}"


def _saturation(results: dict[str, Any]) -> str:
    rows = []
    for flow in _flows(results, "saturation"):
        cells = {t: _cell(results, "saturation", t, flow) for t in ("bff", "baseline", "floor")}
        for target, cell in cells.items():
            if cell is not None:
                rows.append(
                    [
                        flow,
                        target,
                        _spread(cell, "flows_per_s"),
                        _spread(cell, "cpu_app", ".2f"),
                        _spread(cell, "p99"),
                        _fmt(cell["errors"] and cell["errors"]["max"], "d"),
                    ]
                )
        bff = _median(cells["bff"], "flows_per_s")
        rows.append(
            [
                flow,
                "BFF/baseline, BFF/floor",
                f"{_ratio(bff, _median(cells['baseline'], 'flows_per_s'))}, "
                f"{_ratio(bff, _median(cells['floor'], 'flows_per_s'))}",
                "",
                "",
                "",
            ]
        )
    users = results["meta"]["options"]["users"]
    title = f"3. Throughput at saturation: closed loop, {users} flows in flight, one worker"
    headers = ["flow", "app", "flows/s", "CPU ms/flow", "p99 ms", "errors"]
    return f"{title}\n{_table(headers, rows)}"


def _concurrency(results: dict[str, Any]) -> str:
    rows = []
    for cell in (c for c in results["summary"] if c["phase"] == "concurrency"):
        rows.append(
            [
                cell["flow"],
                cell["target"],
                cell["key"].removeprefix("users="),
                _spread(cell, "flows_per_s"),
                _spread(cell, "cpu_app", ".2f"),
                _spread(cell, "p99"),
                _fmt(cell["errors"] and cell["errors"]["max"], "d"),
            ]
        )
    if not rows:
        return "4. Concurrency: not run"
    headers = ["flow", "app", "in flight", "flows/s", "CPU ms/flow", "p99 ms", "errors"]
    return f"4. CPU per flow against flows in flight (closed loop)\n{_table(headers, rows)}"


def _bursts(results: dict[str, Any]) -> list[Run]:
    return [r for r in results["runs"] if r["phase"] == "burst"]


def _burst(results: dict[str, Any]) -> str:
    rows = []
    for run in _bursts(results):
        for number, wave in enumerate(run["waves"], start=1):
            rows.append(
                [
                    run["target"],
                    str(number),
                    str(wave["completed"] + wave["errors"]),
                    _fmt(wave["errors"], "d"),
                    _fmt(wave["wall_s"], ".2f"),
                    _fmt(wave["latency_ms"].get("p50"), ".0f"),
                    _fmt(wave["latency_ms"].get("p99"), ".0f"),
                    _fmt(wave.get("app_cpu_s"), ".2f"),
                    _fmt(wave.get("upstream_peak_in_flight"), "d"),
                    _fmt(wave.get("rss", 0) / MIB, ".0f"),
                ]
            )
    if not rows:
        return "5. Burst: not run"
    run0 = _bursts(results)[0]
    title = (
        f"5. Burst: the sandbox adds {run0['latency_ms_per_call']:.0f} ms to every Flinks call "
        f"(upstream chain of an OAuth flow: {run0['upstream_chain_ms']:.0f} ms);\n"
        "   waves of OAuth flows started at once; peak upstream = most Flinks calls in flight"
    )
    headers = ["app", "wave", "flows", "errors", "wall s", "p50 ms", "p99 ms", "app CPU s"]
    headers += ["peak upstream", "RSS MiB"]
    notes = [
        f"   {r['target']}: VmHWM {r['rss']['hwm'] / MIB:.0f} MiB"
        + (
            f"; DISTURBED: {', '.join(r['machine']['disturbed'])}"
            if r["machine"]["disturbed"]
            else ""
        )
        for r in _bursts(results)
    ]
    return f"{title}\n{_table(headers, rows)}\n" + "\n".join(notes)


def generator_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The generator's CPU per request against the BFF's, at the fixed rate."""
    checks = []
    for flow in _flows(results, "fixed"):
        cell = _cell(results, "fixed", "bff", flow)
        ours, bff = _median(cell, "generator_us_per_request"), _median(cell, "cpu_app")
        if ours is None or bff is None:
            continue
        per_request = 1000 * bff / APP_REQUESTS[flow]
        checks.append(
            {
                "flow": flow,
                "generator_us": ours,
                "bff_us": per_request,
                "share": ours / per_request,
                "ok": ours / per_request < MAX_GENERATOR_SHARE,
            }
        )
    return checks


def _generator(results: dict[str, Any]) -> str:
    lines = ["6. The load generator's own CPU (getrusage), at the fixed rate"]
    for c in generator_checks(results):
        verdict = (
            "ok"
            if c["ok"]
            else "OVER: the generator is the bottleneck (at saturation it takes CPU the app needs)"
        )
        lines.append(
            f"   {c['flow']}: {c['generator_us']:.0f} us per request (app and sandbox) against "
            f"the BFF's {c['bff_us']:.0f} us per request: {c['share']:.1%} "
            f"(limit {MAX_GENERATOR_SHARE:.0%}): {verdict}"
        )
    return "\n".join(lines)


STAND_IN = "fastapi"  # the baseline behind FastAPI routes: the stack with no code of ours


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target's verdict for the BFF, and beside it the same target judged for the FastAPI
    stand-in where it applies: a target the stand-in misses too is out of the card's stack's
    reach on this machine, whatever the BFF's own code does."""
    verdicts: list[dict[str, Any]] = []

    def verdict(
        target: str,
        value: str,
        met: bool | None,
        cell: dict[str, Any] | None,
        stack: tuple[str, bool | None] | None = None,
    ) -> None:
        disturbed = bool(cell and cell["disturbed"])
        stack_value, stack_met = stack if stack else ("", None)
        verdicts.append(
            {
                "target": target,
                "value": value,
                "met": met,
                "disturbed": disturbed,
                "stack_value": stack_value,
                "stack_met": stack_met,
            }
        )

    for flow, limit in MAX_CPU_MS.items():
        cell = _cell(results, "fixed", "bff", flow)
        cpu = _median(cell, "cpu_app")
        met = None if cpu is None else cpu <= limit
        alone = _median(_cell(results, "fixed", STAND_IN, flow), "cpu_app")
        stack = (f"{_fmt(alone, '.2f')} ms", None if alone is None else alone <= limit)
        name = f"BFF CPU per {flow} flow <= {limit:g} ms"
        verdict(name, f"{_fmt(cpu, '.2f')} ms", met, cell, stack)
    for flow in _flows(results, "fixed"):
        cell = _cell(results, "fixed", "bff", flow)
        bff = _median(cell, "cpu_app")
        base = _median(_cell(results, "fixed", "baseline", flow), "cpu_app")
        met = None if bff is None or not base else bff / base <= MAX_CPU_OVER_BASELINE
        value = f"{_ratio(bff, base)} ({_fmt(bff, '.2f')} vs {_fmt(base, '.2f')} ms)"
        alone = _median(_cell(results, "fixed", STAND_IN, flow), "cpu_app")
        alone_met = None if alone is None or not base else alone / base <= MAX_CPU_OVER_BASELINE
        stack = (_ratio(alone, base) if alone is not None else "", alone_met)
        verdict(f"{flow}: BFF CPU <= {MAX_CPU_OVER_BASELINE}x baseline", value, met, cell, stack)
    for flow in _flows(results, "concurrency"):
        levels = [
            c
            for c in results["summary"]
            if (c["phase"], c["target"], c["flow"]) == ("concurrency", "bff", flow)
        ]
        if len(levels) < 2:
            continue
        levels.sort(key=lambda c: int(c["key"].removeprefix("users=")))
        low, high = _median(levels[0], "cpu_app"), _median(levels[-1], "cpu_app")
        met = None if low is None or high is None else high / low <= MAX_CPU_GROWTH
        value = f"{_ratio(high, low)} ({_fmt(high, '.2f')} vs {_fmt(low, '.2f')} ms)"
        name = f"{flow}: CPU/flow at {levels[-1]['key']} <= {MAX_CPU_GROWTH}x {levels[0]['key']}"
        verdict(name, value, met, levels[-1])
    burst = _burst_verdict(results, "bff")
    if burst is not None:
        if stand_in := _burst_verdict(results, STAND_IN):
            burst["stack_value"], burst["stack_met"] = stand_in["value"], stand_in["met"]
        verdicts.append(burst)
    options = results.get("meta", {}).get("options", {})
    # The p99 target is at half the BFF's maximum: a set rate or another fraction is not judged.
    at_half = options.get("fixed_rate") is None and options.get("fixed_fraction", 0.5) == 0.5
    for flow in _flows(results, "fixed"):
        cell = _cell(results, "fixed", "bff", flow)
        p99 = _median(cell, "p99")
        errors = _median(cell, "errors")
        met = None if p99 is None or not at_half else p99 <= MAX_P99_MS and not errors
        rate = results["rates"].get(flow)
        value = f"{_fmt(p99)} ms at {_fmt(rate)}/s, {_fmt(errors, 'd')} errors"
        if not at_half:
            value += " (not half the maximum)"
        verdict(f"{flow}: BFF p99 at half its maximum <= {MAX_P99_MS:g} ms", value, met, cell)
    return verdicts


def _burst_verdict(results: dict[str, Any], target: str) -> dict[str, Any] | None:
    """The burst target judged on `target`'s last burst (its last undisturbed one if any)."""
    runs = [r for r in _bursts(results) if r["target"] == target]
    quiet = [r for r in runs if not r["machine"]["disturbed"]]
    if not runs:
        return None
    run = (quiet or runs)[-1]
    # A wave with errors says nothing of wall time (shed or refused flows end at once).
    walls = figure([w["wall_s"] for w in run["waves"] if not w["errors"]])
    by_wave = [w["errors"] for w in run["waves"]]
    limit = MAX_BURST_OVER_CHAIN * run["upstream_chain_ms"] / 1000
    size = run["waves"][0]["completed"] + run["waves"][0]["errors"]
    wall = "no wave without errors"
    if walls is not None:
        wall = f"wall {walls['median']:.2f} s [{walls['min']:.2f}-{walls['max']:.2f}]"
    return {
        "target": f"{size} OAuth flows at once, +{run['latency_ms_per_call']:.0f} ms: "
        f"0 errors, wall <= {limit:.1f} s",
        "value": f"errors by wave {'/'.join(map(str, by_wave))}; {wall}",
        "met": walls is not None and not any(by_wave) and walls["median"] <= limit,
        "disturbed": bool(run["machine"]["disturbed"]),
        "stack_value": "",
        "stack_met": None,
    }


def _targets(results: dict[str, Any]) -> str:
    def said(v: dict[str, Any]) -> str:
        text = {True: "MET", False: "NOT MET", None: "not measured"}[v["met"]]
        if v["met"] is False and v["stack_met"] is False:
            text += ": out of the stack's reach here (FastAPI alone misses it)"
        return text + (" (disturbed runs)" if v["disturbed"] else "")

    rows = [[v["target"], v["value"], v["stack_value"] or "-", said(v)] for v in targets(results)]
    return (
        "7. Issue 18's targets; beside each, the FastAPI stand-in (the card's stack with no code\n"
        "   of ours) judged by the same target where it applies\n"
        + _table(["target", "measured", "FastAPI alone", "verdict"], rows)
    )


def _errors(results: dict[str, Any]) -> str:
    lines = []
    for run in results["runs"]:
        kinds = dict(run.get("error_kinds") or {})
        for wave in run.get("waves", []):
            for kind, n in (wave.get("error_kinds") or {}).items():
                kinds[kind] = kinds.get(kind, 0) + n
        if kinds:
            where = f"{run['phase']} {run['target']} {run['flow']} {run['key']}"
            lines.append(f"   {where}: " + ", ".join(f"{k} x{n}" for k, n in kinds.items()))
    return "Errors by kind\n" + ("\n".join(lines) if lines else "   none")


def _profile(results: dict[str, Any], top: int = 10) -> str:
    profiles = results["profiles"]
    bff = profiles.get("bff", {})
    if not bff:
        return "8. Profile: not run"
    parts = ["8. Where the CPU goes (py-spy, at the fixed rate; ms/flow = share x CPU per flow)"]
    baseline = profiles.get("baseline", {})
    for flow, mine in bff.items():
        theirs = {r["name"]: r["ms_per_flow"] for r in baseline.get(flow, {}).get("packages", [])}
        rows = [
            [
                r["name"],
                f"{100 * r['share']:.1f}%",
                _fmt(r["ms_per_flow"], ".2f"),
                _fmt(theirs.get(r["name"], 0.0), ".2f") if theirs else "-",
            ]
            for r in mine["packages"][:top]
        ]
        parts.append(
            f"   {flow}: {mine['samples']} samples, {mine['cpu_ms_per_flow']:.2f} ms CPU/flow "
            "under py-spy; self time by package (BFF, and the baseline's for the same package)"
        )
        parts.append(_indent(_table(["package", "share", "BFF ms/flow", "baseline"], rows)))
        for kind, label in (("app_inclusive", "app/ functions, inclusive"), ("functions", "self")):
            rows = [
                [r["name"], f"{100 * r['share']:.1f}%", _fmt(r["ms_per_flow"], ".2f")]
                for r in mine[kind][:top]
            ]
            parts.append(
                f"   {flow}, {label}:\n" + _indent(_table(["where", "share", "ms/flow"], rows))
            )
    return "\n".join(parts)


def _indent(text: str, by: str = "     ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    head = [
        f"flinks-bff benchmark: {meta['cpus']} CPUs, Python {meta['python']}, commit "
        f"{meta['commit']}, {meta.get('duration_s', 0):.0f} s, transport "
        f"{meta['options'].get('transport', 'httpcore')}"
        + (" (BENCH_QUICK)" if meta["options"].get("quick") else ""),
    ]
    if settings := meta["options"].get("bff_env"):
        head.append("   the BFF with " + " ".join(f"{name}={value}" for name, value in settings))
    if meta["app_files_uncommitted"]:
        head.append(
            f"   app/ has {len(meta['app_files_uncommitted'])} uncommitted changes: the BFF "
            "measured is the work tree as it was during the run"
        )
    disturbed = [r for r in results["runs"] if r["machine"]["disturbed"]]
    if disturbed:
        head.append(
            f"   {len(disturbed)} of {len(results['runs'])} runs were disturbed (steal, other "
            "processes or run-queue wait) and repeated; a figure marked * still includes them"
        )
    if results.get("skipped"):
        head.append("   skipped (over the time budget): " + "; ".join(results["skipped"]))
    sections = [
        "\n".join(head),
        _headline(results),
        _latency(results),
        _saturation(results),
        _concurrency(results),
        _burst(results),
        _generator(results),
        _targets(results),
        _errors(results),
        _profile(results),
    ]
    return "\n\n".join(sections)


def main() -> None:
    results = json.loads(
        Path(sys.argv[1] if len(sys.argv) > 1 else "build/bench/results.json").read_text()
    )
    results["summary"] = summary(results)
    print(render(results))


if __name__ == "__main__":
    main()
