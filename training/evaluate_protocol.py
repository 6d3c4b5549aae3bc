"""`journey evaluate next-item`: every next-item kind and baseline under a standard protocol, with intervals.

    run_protocol(dataset, protocol, settings, kinds=None, seed=None) -> ProtocolResult, written as report.md and
                                                                         report.json under
                                                                         reports/evaluate/<dataset>/<protocol>/

The data are prepared by `protocols.py` (SR-GNN's preprocessing, or a random session split); each kind of
`protocol_kinds.KINDS` is fitted on the same training prefixes and recommends 20 items for every test prefix. The
figures are the published ones: P@20 (the share of test prefixes whose next item is among the 20, i.e. hit rate
at 20; SR-GNN's "P@20") and MRR@20 (1/rank of the next item, 0 past 20), each with a 95% percentile interval from
PROTOCOL_ROUNDS bootstrap resamples of the test *sessions* (a session's prefixes move together). Every kind that is
not a baseline is compared with the best baseline on each metric: the paired difference (the same resamples for
both) and its interval; the acceptance asks that lower bound >= -0.01 ("not worse", NON_INFERIORITY_MARGIN), the
promotion gate that it be > 0. The row "served (auto)" is the kind `journey train next-item --kind auto` would
serve: the best on the validation prefixes (training/models/next_item/selection.py), scored on the test prefixes.

For reference (a different dataset, not these figures' peer): SR-GNN reports P@20 50.73 and MRR@20 17.59 (in %) on
Diginetica under this preprocessing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from journey.datasets.store import DatasetStore
from journey.errors import InvalidInputError
from journey.settings import Settings
from training.evaluate import rank_of_label
from training.gate import GATE_SEED, Statistic, bootstrap_table, mean_statistic
from training.models.next_item.base import pad_columns
from training.models.next_item.selection import select_on_validation
from training.protocol_kinds import KINDS, Kind, Ranker
from training.protocols import COLUMNS, ProtocolData, prepare

log = logging.getLogger(__name__)

K: Final = 20
METRICS: Final = (f"P@{K}", f"MRR@{K}")
PROTOCOL_ROUNDS: Final = 1000
NON_INFERIORITY_MARGIN: Final = 0.01
SERVED: Final = "served (auto)"  # the kind `--kind auto` picks on the validation prefixes, scored on the test ones


@dataclass(frozen=True)
class KindFigures:
    kind: str
    baseline: bool
    metrics: dict[str, float]  # P@20, MRR@20
    ci95: dict[str, tuple[float, float]]
    seconds: dict[str, float]


@dataclass(frozen=True)
class ProtocolResult:
    dataset: str
    protocol: str
    seed: int
    funnel: list[dict[str, Any]]
    split: dict[str, Any]
    kinds: list[KindFigures]
    # kind -> metric -> best_baseline, difference, ci95_low, ci95_high, non_inferior (low >= -margin), better (low > 0),
    # verdict (better / not worse / worse / inconclusive)
    versus_best_baseline: dict[str, dict[str, dict[str, Any]]]
    rounds: int = PROTOCOL_ROUNDS
    served: dict[str, Any] = field(default_factory=dict)  # how row SERVED was chosen (selection.py's record)
    paths: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_kinds(names: Sequence[str] | None) -> dict[str, Kind]:
    """The kinds asked for (all when None), refusing an unknown name with the known ones."""
    if not names:
        return dict(KINDS)
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        raise InvalidInputError(f"unknown next-item kind {unknown[0]!r}; known: {sorted(KINDS)}", field="kind")
    return {name: KINDS[name] for name in dict.fromkeys(names)}


def score_kinds(
    prepared: ProtocolData, kinds: dict[str, Kind], seed: int, rounds: int = PROTOCOL_ROUNDS
) -> tuple[list[KindFigures], dict[str, dict[str, dict[str, Any]]], dict[str, Any]]:
    """Fit every kind, list K items per test prefix, and bootstrap the figures over test sessions (paired); with two
    kinds or more, also the row SERVED (`_served`). Returns the figures, each non-baseline kind against the best
    baseline, and how SERVED was chosen."""
    labels = prepared.test.labels
    statistics: dict[str, Statistic] = {}
    seconds: dict[str, dict[str, float]] = {}
    rankers = {}
    for name, kind in kinds.items():
        started = time.perf_counter()
        ranker = rankers[name] = kind.fit(prepared.data, seed)
        fitted = time.perf_counter()
        ids, _ = ranker.recommend(prepared.test.inputs, K)
        ranks = rank_of_label(labels, pad_columns(ids, K))
        statistics[f"{name}/{METRICS[0]}"] = mean_statistic(ranks > 0)
        statistics[f"{name}/{METRICS[1]}"] = mean_statistic(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0))
        seconds[name] = {"fit": round(fitted - started, 2), "recommend": round(time.perf_counter() - fitted, 2)}
        log.info("protocol kind scored", extra={"kind": name, "seconds": seconds[name]})
    simple = [name for name, kind in kinds.items() if kind.baseline]
    served = _served(rankers, simple, prepared, statistics, seconds)
    table = bootstrap_table(statistics, prepared.test.groups, len(labels), rounds, GATE_SEED)
    ones = np.ones(len(labels))
    value = {key: statistic(ones) for key, statistic in statistics.items()}
    baseline = {name: kind.baseline for name, kind in kinds.items()} | ({SERVED: False} if served else {})
    figures = [
        KindFigures(
            name,
            is_baseline,
            {m: value[f"{name}/{m}"] for m in METRICS},
            {m: _interval(table[f"{name}/{m}"]) for m in METRICS},
            seconds[name],
        )
        for name, is_baseline in baseline.items()
    ]
    return figures, _versus_best_baseline(figures, value, table), served


def _served(
    rankers: dict[str, Ranker],
    simple: list[str],
    prepared: ProtocolData,
    statistics: dict[str, Statistic],
    seconds: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """What `journey train next-item --kind auto` would serve: the kind with the best validation hit rate (the
    protocol's validation prefixes; selection.py), scored as row SERVED with that kind's test lists, so its
    difference to the best baseline is paired like any other kind's. {} when fewer than two kinds were fitted."""
    if len(rankers) < 2:
        return {}
    data = prepared.data
    chosen, record = select_on_validation(
        rankers, data.valid, data.valid_labels, K, simple=simple, groups=data.valid_sessions
    )
    for metric in METRICS:
        statistics[f"{SERVED}/{metric}"] = statistics[f"{chosen}/{metric}"]
    seconds[SERVED] = {part: round(sum(s[part] for s in seconds.values()), 2) for part in ("fit", "recommend")}
    return record


def _interval(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.nanpercentile(samples, [2.5, 97.5])
    return float(low), float(high)


def _versus_best_baseline(
    figures: list[KindFigures], value: dict[str, float], table: dict[str, np.ndarray]
) -> dict[str, dict[str, dict[str, Any]]]:
    baselines = [f.kind for f in figures if f.baseline]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if not baselines:
        return out
    for f in (f for f in figures if not f.baseline):
        out[f.kind] = {}
        for metric in METRICS:
            best = max(baselines, key=lambda b: value[f"{b}/{metric}"])
            low, high = _interval(table[f"{f.kind}/{metric}"] - table[f"{best}/{metric}"])
            out[f.kind][metric] = {
                "best_baseline": best,
                "difference": value[f"{f.kind}/{metric}"] - value[f"{best}/{metric}"],
                "ci95_low": low,
                "ci95_high": high,
                "non_inferior": low >= -NON_INFERIORITY_MARGIN,
                "better": low > 0,
                "verdict": _verdict(low, high),
            }
    return out


def _verdict(low: float, high: float) -> str:
    """better (lower bound > 0), not worse (>= -margin), worse (upper bound < 0), else inconclusive (too wide)."""
    if low > 0:
        return "better"
    if low >= -NON_INFERIORITY_MARGIN:
        return "not worse"
    return "worse" if high < 0 else "inconclusive"


def run_protocol(
    dataset: str,
    protocol: str,
    settings: Settings,
    *,
    kinds: Sequence[str] | None = None,
    seed: int | None = None,
    rounds: int = PROTOCOL_ROUNDS,
) -> ProtocolResult:
    """Prepare `dataset` under `protocol`, score the kinds, write the report; see the module docstring."""
    chosen = select_kinds(kinds)
    seed = settings.seed if seed is None else seed
    events = DatasetStore(settings.events_dir).events(dataset, columns=list(COLUMNS))
    prepared = prepare(events, protocol, seed=seed)
    figures, versus, served = score_kinds(prepared, chosen, seed, rounds)
    result = ProtocolResult(dataset, protocol, seed, prepared.funnel, prepared.split, figures, versus, rounds, served)
    out_dir = settings.reports_dir / "evaluate" / dataset / protocol
    return write_protocol_report(result, out_dir)


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _markdown(result: ProtocolResult) -> str:
    split = result.split
    lines = [
        f"# next item on `{result.dataset}`, protocol `{result.protocol}`",
        "",
        f"- split: {split['method']}" + (f" (cut {split['cut']})" if "cut" in split else ""),
        f"- sessions: {json.dumps(split['sessions'])}; prefixes (examples): {json.dumps(split['prefixes'])}",
        f"- intervals: 95% percentile, {result.rounds} bootstrap resamples of the test sessions; seed {result.seed}",
        "",
        "## Preprocessing",
        "",
        _row(["step", "clicks", "sessions", "items"]),
        "|---|---|---|---|",
        *(_row([s["step"], s.get("clicks", ""), s.get("sessions", ""), s.get("items", "")]) for s in result.funnel),
        "",
        f"## P@{K} and MRR@{K} on the test prefixes",
        "",
        _row(["kind", "baseline", *(f"{m} [95%]" for m in METRICS), "fit s", "recommend s"]),
        "|---|---|---|---|---|---|",
    ]
    for f in result.kinds:
        cells = [f"{f.metrics[m]:.4f} [{f.ci95[m][0]:.4f}, {f.ci95[m][1]:.4f}]" for m in METRICS]
        lines.append(_row([f.kind, "yes" if f.baseline else "", *cells, f.seconds["fit"], f.seconds["recommend"]]))
    if result.served:
        lines += ["", f"`{SERVED}` is {result.served['chosen']}: {result.served['rule']}, on the validation prefixes."]
    if result.versus_best_baseline:
        lines += [
            "",
            f"## Against the best baseline (paired; not worse: lower bound >= -{NON_INFERIORITY_MARGIN})",
            "",
            _row(["kind", "metric", "best baseline", "difference [95%]", "verdict"]),
            "|---|---|---|---|---|",
        ]
        for kind, metrics in result.versus_best_baseline.items():
            for metric, v in metrics.items():
                interval = f"{v['difference']:+.4f} [{v['ci95_low']:+.4f}, {v['ci95_high']:+.4f}]"
                lines.append(_row([kind, metric, v["best_baseline"], interval, v["verdict"]]))
    return "\n".join([*lines, ""])


def write_protocol_report(result: ProtocolResult, out_dir: Path) -> ProtocolResult:
    """report.md and report.json into `out_dir` (created); returns the result with their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": str(out_dir / "report.md"), "json": str(out_dir / "report.json")}
    result = replace(result, paths=paths)
    Path(paths["markdown"]).write_text(_markdown(result), encoding="utf-8")
    Path(paths["json"]).write_text(json.dumps(result.as_dict(), indent=2, default=str), encoding="utf-8")
    log.info("protocol report written", extra={"dataset": result.dataset, "protocol": result.protocol, **paths})
    return result
