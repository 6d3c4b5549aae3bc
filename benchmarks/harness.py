"""The benchmark runner: named cases, interleaved repetitions, and one JSON + Markdown report.

Machines here are shared and noisy, so a figure is only reported next to a baseline measured in the same run,
with candidate and baseline repetitions interleaved (A B A B ...) so both see the same noise.
"""

from __future__ import annotations

import json
import logging
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

Metric = Literal["median_ms", "p99_ms", "throughput", "ratio"]


@dataclass(frozen=True)
class Goal:
    """A target such as `throughput >= 1e6` or `ratio <= 2`; `met` is judged from the measured figures."""

    metric: Metric
    op: Literal["<=", ">="]
    value: float

    def met(self, result: Result) -> bool | None:
        measured = getattr(result, self.metric)
        if measured is None:
            return None
        return bool(measured <= self.value if self.op == "<=" else measured >= self.value)

    def __str__(self) -> str:
        value = f"{self.value:,.0f}" if self.value >= 1000 else f"{self.value:g}"
        return f"{self.metric} {self.op} {value}"


@dataclass
class Result:
    """Timings of one measurement: seconds per repetition and the rows each repetition handled."""

    case: str
    name: str
    seconds: list[float]
    rows: int | None = None
    unit: str = "rows"
    baseline: str | None = None
    ratio: float | None = None
    goals: list[Goal] = field(default_factory=list)
    note: str = ""

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.seconds, 99)) * 1000

    @property
    def throughput(self) -> float | None:
        return self.rows / statistics.median(self.seconds) if self.rows else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "name": self.name,
            "median_ms": self.median_ms,
            "p99_ms": self.p99_ms,
            "throughput": self.throughput,
            "unit": self.unit,
            "rows": self.rows,
            "repetitions": len(self.seconds),
            "baseline": self.baseline,
            "ratio": self.ratio,
            "note": self.note,
            "goals": [{**asdict(g), "text": str(g), "met": g.met(self)} for g in self.goals],
        }


@dataclass(frozen=True)
class Case:
    """A named benchmark: `run(quick)` returns its results (a baseline among them)."""

    name: str
    description: str
    run: Callable[[bool], list[Result]]


def interleaved(fns: dict[str, Callable[[], object]], repetitions: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each callable `repetitions` times, alternating between them so noise hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    timings: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repetitions):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
    return timings


def with_ratio(result: Result, baseline: Result) -> Result:
    """Candidate median / baseline median (> 1 means slower than the baseline)."""
    result.baseline = baseline.name
    result.ratio = statistics.median(result.seconds) / statistics.median(baseline.seconds)
    return result


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def to_markdown(results: Iterable[Result], meta: dict[str, Any]) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"{meta['when']} on {meta['machine']} ({meta['cpus']} CPUs), Python {meta['python']}. "
        "Ratios compare medians measured side by side in this run.",
        "",
        "| case | measurement | median ms | p99 ms | throughput | ratio vs baseline | goal | met |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    results = list(results)
    baselines = {(r.case, r.baseline) for r in results if r.baseline}
    for r in results:
        throughput = f"{_fmt(r.throughput)} {r.unit}/s" if r.throughput else "—"
        ratio = (
            f"{r.ratio:.2f}x {r.baseline}"
            if r.ratio is not None
            else "baseline"
            if (r.case, r.name) in baselines
            else "—"
        )
        goals = "; ".join(str(g) for g in r.goals) or "—"
        met = "; ".join({True: "met", False: "**not met**", None: "n/a"}[g.met(r)] for g in r.goals) or "—"
        lines.append(
            f"| {r.case} | {r.name} | {_fmt(r.median_ms)} | {_fmt(r.p99_ms)} | {throughput} | {ratio} | "
            f"{goals} | {met} |"
        )
    notes = [f"- **{r.case} / {r.name}**: {r.note}" for r in results if r.note]
    return "\n".join([*lines, "", *notes] if notes else lines) + "\n"


def run_cases(
    cases: Iterable[Case], out_dir: Path, quick: bool = False, echo: Callable[[str], None] = print
) -> list[Result]:
    """Run cases in order and write `bench.json` + `bench.md` under `out_dir`."""
    results: list[Result] = []
    wall: dict[str, float] = {}
    suite_started = time.perf_counter()
    for case in cases:
        echo(f"== {case.name}: {case.description}")
        case_started = time.perf_counter()
        try:
            case_results = case.run(quick)
        except Exception as exc:  # one broken case must not cost the figures of the others: reported, run fails
            log.exception("benchmark case failed", extra={"case": case.name})
            case_results = [Result(case.name, "FAILED", [time.perf_counter() - case_started], note=_failure(exc))]
        wall[case.name] = time.perf_counter() - case_started
        echo(f"   ({wall[case.name]:.0f} s)")
        for r in case_results:
            echo(
                f"   {r.name}: median {r.median_ms:.1f} ms, p99 {r.p99_ms:.1f} ms"
                + (f", {r.throughput:,.0f} {r.unit}/s" if r.throughput else "")
                + (f", {r.ratio:.2f}x {r.baseline}" if r.ratio is not None else "")
            )
        results.extend(case_results)
    results.append(suite_result(time.perf_counter() - suite_started, wall, quick))
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": _cpu_count(),
        "python": platform.python_version(),
        "quick": quick,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(
        json.dumps({"meta": meta, "results": [r.to_dict() for r in results]}, indent=2), encoding="utf-8"
    )
    (out_dir / "bench.md").write_text(to_markdown(results, meta), encoding="utf-8")
    return results


SUITE_GOAL_S = 600  # the performance issue: the whole `make bench` in under 10 minutes on 2 cores


def suite_result(seconds: float, per_case: dict[str, float], quick: bool) -> Result:
    """The run's own wall time as a row of the table, with each case's share in the note."""
    shares = ", ".join(f"{name} {s:.0f} s" for name, s in per_case.items())
    full = len(per_case) > 1 and not quick
    return Result(
        "suite",
        "wall time of this run" + ("" if full else " (partial or --quick: the goal is for the full suite)"),
        [seconds],
        goals=[Goal("median_ms", "<=", SUITE_GOAL_S * 1000)] if full else [],
        note=shares,
    )


def failed(results: Iterable[Result]) -> list[str]:
    """Cases that raised instead of measuring (their row is named FAILED)."""
    return [r.case for r in results if r.name == "FAILED"]


def _failure(exc: BaseException) -> str:
    return f"FAILED: {type(exc).__name__}: {str(exc)[:500]} (traceback in the log above)"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
