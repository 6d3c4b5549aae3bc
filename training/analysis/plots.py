"""The journey report's plots, one PNG each: funnel, transition heatmaps (stages and event types), Sankey-style flow
of stage paths, conversion probability by stage, time-to-convert distributions, segments.

Every plot is drawn even when the data cannot fill it (no purchase, one segment, no category): the panel then says
why it is empty, so a small sample still gets a complete report. Matplotlib's object API (`Figure`), as in
`training/model_report.py`: no global state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np

from journey.contracts import STAGES
from journey.events import EVENT_TYPES
from training.analysis.results import PATH_NODES, PATH_STEPS, JourneyAnalysis

PLOTS: Final = ("funnel", "transitions", "flow", "conversion", "time_to_convert", "segments")
_OUTCOME: Final = "session_conversion_rate"  # shown beside the clustered columns, apart
_COLOURS: Final = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#9D9D9D", "#D4D4D4")  # PATH_NODES order


def draw_plots(analysis: JourneyAnalysis, out_dir: Path) -> dict[str, str]:
    """Every plot of PLOTS as a PNG in `out_dir`: plot name -> file name."""
    return {
        "funnel": _funnel_plot(analysis, out_dir),
        "transitions": _transitions_plot(analysis, out_dir),
        "flow": _flow_plot(analysis, out_dir),
        "conversion": _conversion_plot(analysis, out_dir),
        "time_to_convert": _time_plot(analysis, out_dir),
        "segments": _segments_plot(analysis, out_dir),
    }


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal; "—" when undefined (labels here, table cells in the report)."""
    return "—" if value is None else f"{100 * value:.1f}%"


def _figure(width: float = 6.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure  # matplotlib loads only when a report is drawn

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Any, out_dir: Path, name: str) -> str:
    file = f"{name}.png"
    fig.savefig(out_dir / file)
    return file


def _empty(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_axis_off()


def _funnel_plot(analysis: JourneyAnalysis, out_dir: Path) -> str:
    fig = _figure(12, 4.5)
    left, right = fig.subplots(1, 2)
    funnel = analysis.overall.funnel
    shares = funnel.shares()
    y = np.arange(len(STAGES))[::-1]
    left.barh(y, shares, color=_COLOURS[: len(STAGES)])
    for yi, share, reached in zip(y, shares, funnel.reached, strict=True):
        left.text(share, yi, f" {reached:,} ({share:.1%})", va="center")
    for yi, drop in zip(y[1:], funnel.drop_off(), strict=True):
        left.text(0.02, yi + 0.5, f"drop-off {pct(drop)}", va="center", fontsize=8, color="firebrick")
    left.set_yticks(y, STAGES)
    left.set(xlim=(0, 1.35), title="Funnel: share of sessions reaching each stage", xlabel="share of sessions")
    groups = analysis.populated()
    width = 0.8 / len(groups)
    for i, group in enumerate(groups):
        right.bar(np.arange(len(STAGES)) + i * width, group.funnel.shares(), width, label=group.label)
    right.set_xticks(np.arange(len(STAGES)) + 0.4 - width / 2, STAGES)
    right.set(yscale="log", ylim=(1e-4, 1.5), title="Funnel by segment (log scale)", ylabel="share of sessions")
    right.legend(fontsize=8)
    return _save(fig, out_dir, "funnel")


def _heatmap(ax: Any, matrix: np.ndarray, states: tuple[str, ...], title: str, counts: np.ndarray | None) -> None:
    ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value > 0.5 else "black", fontsize=8)
    totals = counts.sum(axis=1) if counts is not None else np.zeros(len(states), dtype=np.int64)
    ax.set_xticks(range(len(states)), states, rotation=35, ha="right")
    ax.set_yticks(range(len(states)), [f"{s} ({int(n):,})" for s, n in zip(states, totals, strict=True)])
    ax.set(title=title, xlabel="to", ylabel="from (transitions observed)")


def _transitions_plot(analysis: JourneyAnalysis, out_dir: Path) -> str:
    fig = _figure(12, 5)
    left, right = fig.subplots(1, 2)
    stages, types = analysis.overall.stages, analysis.overall.event_types
    _heatmap(left, stages.transitions, stages.states, "Stage transitions (MLE, rows = from)", stages.counts)
    _heatmap(right, types.transitions, types.states, "Event-type transitions", types.counts)
    return _save(fig, out_dir, "transitions")


def _band(ax: Any, x0: float, x1: float, left: tuple[float, float], right: tuple[float, float], colour: str) -> None:
    x = np.linspace(x0, x1, 40)
    s = (x - x0) / (x1 - x0)
    s = 3 * s**2 - 2 * s**3  # smoothstep: the S-shaped band of a Sankey diagram
    ax.fill_between(x, left[0] + (right[0] - left[0]) * s, left[1] + (right[1] - left[1]) * s, color=colour, alpha=0.4)


def _flow_plot(analysis: JourneyAnalysis, out_dir: Path) -> str:
    from matplotlib.patches import Rectangle  # as in _figure

    paths = analysis.paths
    fig = _figure(12, 5.5)
    ax = fig.subplots()
    gap, width, nodes = 0.015, 0.12, len(PATH_NODES)
    scale = (1 - gap * (nodes - 1)) / max(paths.sessions, 1)
    spans: dict[tuple[int, int], list[float]] = {}
    for j in range(PATH_STEPS + 1):
        top = 1.0
        for k in range(nodes):
            height = paths.columns[j, k] * scale
            if paths.columns[j, k] == 0:
                continue
            spans[(j, k)] = [top - height, top, top, top]  # bottom, top, next outgoing top, next incoming top
            ax.add_patch(Rectangle((j - width / 2, top - height), width, height, color=_COLOURS[k]))
            if height > 0.03:
                ax.text(j + width / 2 + 0.02, top - height / 2, f"{PATH_NODES[k]}\n{paths.columns[j, k]:,}", fontsize=7)
            top -= height + gap
    for j in range(PATH_STEPS):
        for a in range(nodes):
            for b in range(nodes):
                count = paths.flows[j, a, b]
                if not count:
                    continue
                height, source, target = count * scale, spans[(j, a)], spans[(j + 1, b)]
                left = (source[2] - height, source[2])
                right = (target[3] - height, target[3])
                source[2] -= height
                target[3] -= height
                _band(ax, j + width / 2, j + 1 - width / 2, left, right, _COLOURS[a])
    ax.set_xticks(range(PATH_STEPS + 1), [f"step {j + 1}" for j in range(PATH_STEPS + 1)])
    ax.set(xlim=(-0.3, PATH_STEPS + 0.6), ylim=(0, 1.02), yticks=[])
    ax.set_title(f"Stage paths of {paths.sessions:,} sessions (repeats collapsed; 'more' = longer than {PATH_STEPS})")
    return _save(fig, out_dir, "flow")


def _conversion_plot(analysis: JourneyAnalysis, out_dir: Path) -> str:
    fig = _figure(12, 4.5)
    left, right = fig.subplots(1, 2)
    groups = analysis.populated()
    width = 0.8 / len(groups)
    for i, group in enumerate(groups):
        p = group.conversion()["purchase_probability"]
        left.bar(np.arange(len(STAGES)) + i * width, [p[s] for s in STAGES], width, label=group.label)
    left.set_xticks(np.arange(len(STAGES)) + 0.4 - width / 2, STAGES)
    left.set(title="P(purchase later in the session) by current stage", ylabel="probability")
    left.legend(fontsize=8)
    by_type = analysis.overall.conversion()["purchase_probability_by_event_type"]
    bars = right.bar(EVENT_TYPES, [by_type[t] for t in EVENT_TYPES], color=_COLOURS[: len(EVENT_TYPES)])
    right.bar_label(bars, fmt="%.3f", fontsize=8)
    right.set(title="P(purchase later) by last event type (all sessions)", ylabel="probability")
    for ax in (left, right):
        ax.set_ylim(0, min(1.0, max(0.05, 1.2 * max(bar.get_height() for bar in ax.patches))))
    if analysis.overall.funnel.reached[STAGES.index("purchase")] == 0:
        for ax in (left, right):
            ax.text(
                0.5, 0.5, "no purchase in this dataset: every probability is 0", ha="center", transform=ax.transAxes
            )
    return _save(fig, out_dir, "conversion")


def _time_plot(analysis: JourneyAnalysis, out_dir: Path) -> str:
    fig = _figure(12, 4.5)
    left, right = fig.subplots(1, 2)
    overall = analysis.overall.time_to_convert
    if not overall.seconds.size:
        _empty(left, "no purchase in this dataset:\nno time to convert to show")
        _empty(right, "no purchase in this dataset:\nno events-before-purchase to show")
        return _save(fig, out_dir, "time_to_convert")
    minutes = np.maximum(overall.seconds / 60, 1 / 60)
    bins = np.logspace(np.log10(minutes.min()), np.log10(max(minutes.max(), minutes.min() * 1.01)), 30)
    left.hist(minutes, bins=bins, color=_COLOURS[0], alpha=0.5, label=f"all ({minutes.size:,})")
    for group in analysis.segments:
        if group.time_to_convert.seconds.size:
            left.hist(
                np.maximum(group.time_to_convert.seconds / 60, 1 / 60), bins=bins, histtype="step", label=group.label
            )
    left.set(xscale="log", title="Time from session start to first purchase", xlabel="minutes", ylabel="sessions")
    left.legend(fontsize=8)
    top = int(np.percentile(overall.events, 99)) + 1
    right.hist(np.minimum(overall.events, top), bins=np.arange(top + 2) - 0.5, color=_COLOURS[1])
    right.set(title="Events before the first purchase", xlabel=f"events (>= {top} pooled)", ylabel="sessions")
    return _save(fig, out_dir, "time_to_convert")


def _segments_plot(analysis: JourneyAnalysis, out_dir: Path) -> str:
    fig = _figure(12, 4.5)
    left, right = fig.subplots(1, 2, width_ratios=[1, 2])
    segments = analysis.profiles.segments
    names = [f"{s.segment_id}: {s.name}" for s in segments]
    left.barh(names[::-1], [s.users for s in segments][::-1], color=_COLOURS[0])
    left.set(title=f"Users per segment (k = {analysis.profiles.k})", xlabel="users")
    features = list(analysis.profiles.clustered_on)
    raw = np.array([[s.means.get(f, 0.0) for f in features] + [s.outcomes.get(_OUTCOME, 0.0)] for s in segments])
    peak = np.abs(raw).max(axis=0)
    right.imshow(raw / np.where(peak > 0, peak, 1), vmin=0, vmax=1, cmap="Oranges", aspect="auto")
    for (i, j), value in np.ndenumerate(raw):
        right.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=8)
    ticks = [*(f.replace("_", " ") for f in features), "conversion\n(outcome, not clustered)"]
    right.set_xticks(range(len(ticks)), ticks, rotation=25, ha="right")
    right.axvline(len(features) - 0.5, color="black", linewidth=2)
    right.set_yticks(range(len(segments)), names)
    right.set_title("Segment means: clustered on | outcome (colour: share of the largest)")
    return _save(fig, out_dir, "segments")
