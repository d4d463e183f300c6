"""`make bench`'s verdicts (bench/report.py) and options (bench/run.py). The verdicts are
judged on made-up runs on either side of each target: the report must call a miss a miss, and
say when the stack alone misses it too."""

from __future__ import annotations

from typing import Any

import pytest

from bench.report import _targets, summary, targets
from bench.run import _options


def _run(target: str, flow: str, cpu: float, *, phase: str = "fixed", p99: float = 20.0) -> Any:
    return {
        "phase": phase,
        "target": target,
        "flow": flow,
        "key": "rate=50",
        "machine": {"disturbed": []},
        "flows_per_s": 50.0,
        "cpu_ms_per_flow": {"app": cpu, "sandbox": 5.0, "redis": 0.8, "generator": 0.4},
        "generator": {"cpu_us_per_request": 100.0},
        "latency_ms": {"p50": 12.0, "p99": p99},
        "wait_ms_per_flow": {"app": 0.03, "sandbox": 0.05},
        "errors": 0,
    }


def _burst(target: str, walls: list[float], errors: int = 0) -> Any:
    return {
        "phase": "burst",
        "target": target,
        "flow": "oauth",
        "key": "burst",
        "machine": {"disturbed": []},
        "upstream_chain_ms": 800.0,
        "latency_ms_per_call": 200.0,
        "waves": [{"wall_s": w, "errors": errors, "completed": 500 - errors} for w in walls],
    }


def _results(runs: list[Any]) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": runs, "rates": {"oauth": 50.0}}
    results["summary"] = summary(results)
    return results


def _by_target(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["target"]: v for v in targets(results)}


def _three(target: str, cpu: float, **kwargs: Any) -> list[Any]:
    return [_run(target, "oauth", cpu + d, **kwargs) for d in (-0.1, 0.0, 0.1)]


def test_a_target_the_stand_in_misses_too_is_out_of_the_stack_s_reach() -> None:
    runs = [*_three("bff", 9.5), *_three("fastapi", 7.5), *_three("baseline", 6.0)]
    verdicts = _by_target(_results([*runs, _burst("bff", [4.5] * 3), _burst("fastapi", [3.7] * 3)]))

    cpu = verdicts["BFF CPU per oauth flow <= 6 ms"]
    assert (cpu["value"], cpu["met"]) == ("9.50 ms", False)
    assert (cpu["stack_value"], cpu["stack_met"]) == ("7.50 ms", False)
    ratio = verdicts["oauth: BFF CPU <= 1.2x baseline"]
    assert (ratio["met"], ratio["stack_value"], ratio["stack_met"]) == (False, "1.25x", False)
    burst = verdicts["500 OAuth flows at once, +200 ms: 0 errors, wall <= 2.4 s"]
    assert (burst["met"], burst["stack_met"]) == (False, False)
    assert "wall 3.70 s" in burst["stack_value"]
    assert render_targets(_results([*runs])).count("out of the stack's reach") == 2


def test_a_miss_the_stand_in_meets_is_the_bff_s_own() -> None:
    runs = [*_three("bff", 7.0), *_three("fastapi", 5.0), *_three("baseline", 4.5)]
    verdicts = _by_target(_results([*runs, _burst("bff", [2.5] * 3), _burst("fastapi", [2.2] * 3)]))

    for name in (
        "BFF CPU per oauth flow <= 6 ms",
        "oauth: BFF CPU <= 1.2x baseline",
        "500 OAuth flows at once, +200 ms: 0 errors, wall <= 2.4 s",
    ):
        assert (verdicts[name]["met"], verdicts[name]["stack_met"]) == (False, True), name
    assert "out of the stack's reach" not in render_targets(_results(runs))


def test_targets_within_reach_are_met_and_errors_fail_the_burst() -> None:
    runs = [*_three("bff", 5.0), *_three("fastapi", 4.6), *_three("baseline", 4.5)]
    verdicts = _by_target(_results([*runs, _burst("bff", [2.3] * 3, errors=1)]))

    assert verdicts["BFF CPU per oauth flow <= 6 ms"]["met"] is True
    assert verdicts["oauth: BFF CPU <= 1.2x baseline"]["met"] is True
    burst = verdicts["500 OAuth flows at once, +200 ms: 0 errors, wall <= 2.4 s"]
    assert burst["met"] is False  # fast, but not without errors
    assert burst["value"] == "errors by wave 1/1/1; no wave without errors"
    assert verdicts["oauth: BFF p99 at half its maximum <= 25 ms"]["met"] is True


def test_without_a_stand_in_nothing_is_called_out_of_reach() -> None:
    runs = [*_three("bff", 9.5), *_three("baseline", 6.0)]
    verdicts = _by_target(_results([*runs, _burst("bff", [4.5] * 3)]))

    assert all(v["stack_met"] is None for v in verdicts.values())
    assert "out of the stack's reach" not in render_targets(_results(runs))


def render_targets(results: dict[str, Any]) -> str:
    return _targets(results)


def test_a_p99_at_another_rate_than_half_the_maximum_is_not_judged() -> None:
    results = _results(_three("bff", 7.0, p99=20.0))
    assert _by_target(results)["oauth: BFF p99 at half its maximum <= 25 ms"]["met"] is True
    for options in ({"fixed_rate": 60.0}, {"fixed_rate": None, "fixed_fraction": 0.7}):
        results["meta"] = {"options": options}
        p99 = _by_target(results)["oauth: BFF p99 at half its maximum <= 25 ms"]
        assert p99["met"] is None
        assert p99["value"].endswith("(not half the maximum)")


def test_the_fixed_phase_takes_a_set_rate_or_the_saturated_one() -> None:
    """Two commits compared back to back need one rate; otherwise the rate is half the BFF's
    saturated flows/s, so the fixed phase needs the saturation phase."""
    assert _options(["--phases", "fixed", "--fixed-rate", "60"]).fixed_rate == 60.0
    assert _options(["--phases", "saturation,fixed"]).fixed_rate is None
    with pytest.raises(SystemExit, match="needs saturation, or --fixed-rate"):
        _options(["--phases", "fixed"])
    with pytest.raises(SystemExit, match="positive"):
        _options(["--phases", "fixed", "--fixed-rate", "0"])
