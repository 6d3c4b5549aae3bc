from __future__ import annotations

import json
from pathlib import Path

from benchmarks.harness import Case, Goal, Result, failed, interleaved, run_cases, with_ratio


def test_interleaved_runs_every_callable_the_same_number_of_times() -> None:
    calls: list[str] = []
    timings = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repetitions=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert {k: len(v) for k, v in timings.items()} == {"a": 3, "b": 3}


def test_ratio_is_candidate_median_over_baseline_median() -> None:
    base = Result("c", "base", [1.0, 1.0, 1.0])
    cand = with_ratio(Result("c", "cand", [2.0, 3.0, 2.0]), base)
    assert cand.ratio == 2.0 and cand.baseline == "base"


def test_goals_are_judged_from_measured_figures() -> None:
    r = Result("c", "x", [0.5, 0.5], rows=1_000_000)
    assert Goal("throughput", ">=", 1_000_000).met(r) is True
    assert Goal("throughput", ">=", 3_000_000).met(r) is False
    assert Goal("ratio", "<=", 2).met(r) is None  # no baseline: not judged


def test_run_cases_writes_json_and_markdown_with_goal_status(tmp_path: Path) -> None:
    def run(quick: bool) -> list[Result]:
        base = Result("toy", "baseline", [0.1, 0.1])
        return [
            base,
            with_ratio(Result("toy", "candidate", [0.3, 0.3], rows=10, goals=[Goal("ratio", "<=", 2)]), base),
        ]

    run_cases([Case("toy", "a toy case", run)], tmp_path, echo=lambda _s: None)
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["results"][1]["goals"][0]["met"] is False
    assert abs(report["results"][1]["ratio"] - 3.0) < 1e-9
    markdown = (tmp_path / "bench.md").read_text()
    assert "| toy | candidate |" in markdown and "**not met**" in markdown and "3.00x baseline" in markdown


def test_a_failing_case_is_a_failed_row_and_the_next_case_still_runs(tmp_path: Path) -> None:
    def broken(quick: bool) -> list[Result]:
        raise RuntimeError("redis went away")

    results = run_cases(
        [Case("broken", "raises", broken), Case("fine", "measures", lambda q: [Result("fine", "x", [0.1])])],
        tmp_path,
        echo=lambda _s: None,
    )

    assert failed(results) == ["broken"]
    assert [r.case for r in results] == ["broken", "fine", "suite"]
    assert "RuntimeError: redis went away" in results[0].note


def test_the_full_suite_reports_its_wall_time_against_the_ten_minute_goal(tmp_path: Path) -> None:
    cases = [Case(name, name, lambda q, n=name: [Result(n, "x", [0.1])]) for name in ("one", "two")]

    suite = run_cases(cases, tmp_path, echo=lambda _s: None)[-1]

    assert suite.case == "suite" and suite.goals == [Goal("median_ms", "<=", 600_000)]
    assert suite.goals[0].met(suite) is True
    assert suite.note.startswith("one 0 s, two 0 s")


def test_a_partial_or_quick_run_carries_no_suite_goal(tmp_path: Path) -> None:
    one = [Case("one", "one", lambda q: [Result("one", "x", [0.1])])]

    assert run_cases(one, tmp_path, echo=lambda _s: None)[-1].goals == []
    assert run_cases(one * 2, tmp_path, quick=True, echo=lambda _s: None)[-1].goals == []
