"""Running the journey analysis of a stored dataset: read it, analyse it, write what it produced.

    run_analysis(dataset, settings, ...)   -> the chain artifact serving reads (Settings.journey_chain_path), the
                                              report (reports/journey/<dataset>/), the `user_profile` features

The orchestration lives here, above both estimation (`journey.py`) and reporting (`report.py`), so neither imports
the other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from journey.datasets.store import DatasetStore
from journey.errors import InvalidInputError
from journey.settings import Settings
from training.analysis.journey import TOP_CATEGORIES, analyze_events
from training.analysis.profiles import K_RANGE, write_profiles
from training.analysis.report import write_report
from training.analysis.results import JourneyAnalysis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisResult:
    analysis: JourneyAnalysis
    report: Path
    html: Path
    chain: Path
    features: dict[str, Any] | None
    seconds: dict[str, float]


def run_analysis(
    dataset: str,
    settings: Settings,
    *,
    seed: int | None = None,
    top: int = TOP_CATEGORIES,
    k_range: tuple[int, int] = K_RANGE,
    write_features: bool = True,
    progress: Callable[[str], None] | None = None,
) -> AnalysisResult:
    """Analyse a stored dataset; write the chain artifact, the report and (optionally) the user_profile features."""
    say = progress or (lambda _step: None)
    check_k_range(k_range)
    seed = settings.seed if seed is None else seed
    started = time.perf_counter()
    say(f"reading events of {dataset!r}")
    events = DatasetStore(settings.events_dir).events(dataset)
    say(f"analysing {events.num_rows:,} events")
    analysis = analyze_events(events, dataset=dataset, seed=seed, top=top, k_range=k_range)
    seconds = {"analysis": round(time.perf_counter() - started, 3)}
    chain = analysis.artifact().save(settings.journey_chain_path)
    say("rendering the report")
    report, html = write_report(analysis, settings.journey_reports_dir / dataset)
    seconds["report"] = round(time.perf_counter() - started - seconds["analysis"], 3)
    features = None
    if write_features:
        say("writing user_profile features (offline + online)")
        features = write_profiles(analysis.profiles, settings)
    seconds["total"] = round(time.perf_counter() - started, 3)
    log.info("journey analysis done", extra={"dataset": dataset, "report_path": str(report), "seconds": seconds})
    return AnalysisResult(analysis, report, html, chain, features, seconds)


def check_k_range(k_range: tuple[int, int]) -> None:
    low, high = k_range
    if low < 2 or high < low:
        raise InvalidInputError(
            f"segment counts must satisfy 2 <= k-min <= k-max, got {low}..{high}", field="k", value=f"{low}..{high}"
        )
