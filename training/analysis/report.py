"""The journey report: Markdown + HTML with PNG plots, one folder per dataset (reports/journey/<dataset>/).

Plots: funnel, transition heatmaps (stages and event types), Sankey-style flow of stage paths, conversion
probability by stage, time-to-convert distributions, segments. Every plot is drawn even when the data cannot fill
it (no purchase, one segment, no category): the panel then says why it is empty, so a small sample still gets a
complete report. Matplotlib's object API (`Figure`), as in `training/evaluate.py`: no global state.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from journey.contracts import STAGES
from journey.events import EVENT_TYPES
from journey.stages import STAGE_STATES
from training.analysis.journey import PATH_NODES, PATH_STEPS, GroupStats, JourneyAnalysis
from training.analysis.profiles import CLUSTER_FEATURES

REPORT_FILE: Final = "report.md"
HTML_FILE: Final = "report.html"
ANALYSIS_FILE: Final = "analysis.json"
CHAIN_FILE: Final = "chain.json"
PLOTS: Final = ("funnel", "transitions", "flow", "conversion", "time_to_convert", "segments")
_COLOURS: Final = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#9D9D9D", "#D4D4D4")  # PATH_NODES order


# ------------------------------------------------------------------------------------------------------ document


@dataclass
class _Doc:
    """Blocks rendered twice, as Markdown and as HTML, so both say the same."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def image(self, title: str, file: str) -> None:
        self.blocks.append(("img", (title, file)))

    def markdown(self) -> str:
        out: list[str] = []
        for kind, value in self.blocks:
            if kind == "h":
                out += ["#" * value[0] + " " + value[1], ""]
            elif kind == "p":
                out += [value, ""]
            elif kind == "ul":
                out += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                header, rows = value
                out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows] + [""]
            else:
                out += [f"![{value[0]}]({value[1]})", ""]
        return "\n".join(out)

    def html(self, title: str) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>", _STYLE]
        for kind, value in self.blocks:
            if kind == "h":
                out.append(f"<h{value[0]}>{html.escape(value[1])}</h{value[0]}>")
            elif kind == "p":
                out.append(f"<p>{html.escape(value)}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                header, rows = value
                head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
                body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
                out.append(f"<table><tr>{head}</tr>{body}</table>")
            else:
                out.append(
                    f"<figure><img src='{html.escape(value[1])}'><figcaption>{html.escape(value[0])}</figcaption>"
                )
                out.append("</figure>")
        return "\n".join([*out, "</body></html>"])


_STYLE: Final = (
    "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{max-width:100%}</style></head><body>"
)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return str(value)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


# --------------------------------------------------------------------------------------------------------- plots


def _figure(width: float = 6.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Any, out_dir: Path, name: str) -> str:
    file = f"{name}.png"
    fig.savefig(out_dir / file)
    return file


def _empty(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_axis_off()


def _populated(analysis: JourneyAnalysis) -> list[GroupStats]:
    return [analysis.overall, *(g for g in analysis.segments if g.sessions)]


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
        left.text(0.02, yi + 0.5, f"drop-off {_pct(drop)}", va="center", fontsize=8, color="firebrick")
    left.set_yticks(y, STAGES)
    left.set(xlim=(0, 1.35), title="Funnel: share of sessions reaching each stage", xlabel="share of sessions")
    groups = _populated(analysis)
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
    from matplotlib.patches import Rectangle

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
    groups = _populated(analysis)
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
    features = list(CLUSTER_FEATURES)
    raw = np.array([[s.means[f] for f in features] for s in segments])
    peak = np.abs(raw).max(axis=0)
    right.imshow(raw / np.where(peak > 0, peak, 1), vmin=0, vmax=1, cmap="Oranges", aspect="auto")
    for (i, j), value in np.ndenumerate(raw):
        right.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=8)
    right.set_xticks(range(len(features)), [f.replace("_", " ") for f in features], rotation=25, ha="right")
    right.set_yticks(range(len(segments)), names)
    right.set_title("Segment means (colour: share of the largest segment mean)")
    return _save(fig, out_dir, "segments")


# -------------------------------------------------------------------------------------------------------- report


def _data_section(doc: _Doc, analysis: JourneyAnalysis) -> None:
    o, start, end = analysis.overall, *analysis.window
    doc.bullets(
        [
            f"dataset `{analysis.dataset}`: {o.events:,} events, {o.sessions:,} sessions, {o.users:,} users",
            f"data window {start.isoformat()} .. {end.isoformat()}; seed {analysis.seed}",
            f"analysis seconds: {json.dumps(analysis.seconds)}",
        ]
    )
    if analysis.notes:
        doc.heading(3, "Notes")
        doc.bullets(list(analysis.notes))


def _funnel_section(doc: _Doc, analysis: JourneyAnalysis, plot: str) -> None:
    f = analysis.overall.funnel
    drops = [*f.drop_off(), None]
    rows = [
        [s, r, _pct(share), _pct(d), e]
        for s, r, share, d, e in zip(STAGES, f.reached, f.shares(), drops, f.ended, strict=True)
    ]
    doc.heading(2, "Funnel")
    doc.text("A session reaches a stage when its furthest stage (in funnel order) is at least that one.")
    doc.table(["stage", "sessions reaching", "share", "drop-off to next stage", "sessions ending here"], rows)
    doc.table(
        ["group", "sessions", *(f"reach {s}" for s in STAGES[1:])],
        [[g.label, g.sessions, *(_pct(v) for v in g.funnel.shares()[1:])] for g in _populated(analysis)],
    )
    doc.image("Funnel", plot)


def _chain_table(doc: _Doc, group: GroupStats, which: str) -> None:
    chain = group.stages if which == "stages" else group.event_types
    counts = chain.counts if chain.counts is not None else np.zeros_like(chain.transitions)
    rows = [[s, int(counts[i].sum()), *chain.transitions[i].tolist()] for i, s in enumerate(chain.states)]
    doc.table(["from \\ to", "transitions", *chain.states], rows)


def _conversion_section(doc: _Doc, analysis: JourneyAnalysis, plot: str) -> None:
    doc.heading(2, "Conversion (absorbing chain: purchase and exit absorbing)")
    doc.text(
        "P(purchase) is the chance of a purchase at a later event of the same session from the current stage "
        "(from `purchase` itself: of another purchase); events to purchase counts the events before it, the "
        "current one included, in sessions that do buy."
    )
    groups = _populated(analysis)
    conversions = [g.conversion() for g in groups]
    rows = [[s, *(c["purchase_probability"][s] for c in conversions)] for s in STAGES]
    doc.table(["stage", *(f"P(purchase), {g.label}" for g in groups)], rows)
    overall = conversions[0]
    rows = [[s, overall["events_to_purchase"].get(s), overall["events_left"].get(s)] for s in STAGES]
    doc.table(["stage (all sessions)", "expected events to purchase", "expected events left"], rows)
    rows = [[t, overall["purchase_probability_by_event_type"][t]] for t in EVENT_TYPES]
    doc.table(["last event type", "P(purchase later)"], rows)
    doc.text(
        f"A new session converts with probability {overall['new_session_conversion']:.4f} under the chain "
        f"(observed share of converting sessions: {overall['observed_conversion']:.4f})."
    )
    doc.image("Conversion probability by stage", plot)


def _time_section(doc: _Doc, analysis: JourneyAnalysis, plot: str) -> None:
    doc.heading(2, "Time to convert")
    rows = []
    for group in _populated(analysis):
        s = group.time_to_convert.summary()
        rows.append(
            [group.label, s["sessions"], s.get("seconds_median"), s.get("seconds_p90"), s.get("events_before_median")]
        )
    doc.table(["group", "converting sessions", "median seconds", "p90 seconds", "median events before"], rows)
    doc.image("Time to convert", plot)


def _segments_section(doc: _Doc, analysis: JourneyAnalysis, plot: str) -> None:
    profiles = analysis.profiles
    doc.heading(2, "User segments (k-means over RFM + behaviour profiles)")
    scores = ", ".join(f"k={k}: {v:.3f}" for k, v in sorted(profiles.silhouette_by_k.items())) or "none (too few users)"
    doc.text(f"k = {profiles.k} chosen by silhouette on a sample of users ({scores}); profiles as of {profiles.as_of}.")
    rows = []
    for segment, group in zip(profiles.segments, analysis.segments, strict=True):
        m = segment.means
        rows.append(
            [
                segment.segment_id, segment.name, segment.users, group.sessions, m["recency_days"],
                m["frequency_sessions"], m["events_per_session"], m["monetary_value"],
                _pct(m["session_conversion_rate"]), _pct(m["session_cart_rate"]), _pct(m["cart_abandonment_rate"]),
                group.conversion()["purchase_probability"]["discovery"],
            ]
        )  # fmt: skip
    header = ["id", "name", "users", "sessions", "recency days", "sessions/user", "events/session", "spend"]
    doc.table([*header, "conversion", "cart rate", "abandonment", "P(purchase) from discovery"], rows)
    doc.image("Segments", plot)


def _categories_section(doc: _Doc, analysis: JourneyAnalysis) -> None:
    doc.heading(2, "Top entry categories")
    if not analysis.categories:
        doc.text("No category information in this dataset.")
        return
    rows = []
    for group in analysis.categories:
        c = group.conversion()
        rows.append(
            [
                group.label, group.sessions, _pct(group.funnel.shares()[1]), _pct(c["observed_conversion"]),
                c["purchase_probability"]["discovery"], group.time_to_convert.summary().get("seconds_median"),
            ]
        )  # fmt: skip
    header = ["entry category", "sessions", "reach consideration", "conversion", "P(purchase) from discovery"]
    doc.table([*header, "median seconds to convert"], rows)


def _render(analysis: JourneyAnalysis, plots: dict[str, str]) -> _Doc:
    doc = _Doc()
    doc.heading(1, f"Journey analysis: {analysis.dataset}")
    _data_section(doc, analysis)
    _funnel_section(doc, analysis, plots["funnel"])
    doc.heading(2, "Stage transitions (Markov chain, maximum likelihood)")
    _chain_table(doc, analysis.overall, "stages")
    doc.heading(3, "Event-type transitions")
    _chain_table(doc, analysis.overall, "event_types")
    doc.image("Transition heatmaps", plots["transitions"])
    _conversion_section(doc, analysis, plots["conversion"])
    doc.heading(2, "Stage paths")
    rows = [[" -> ".join(path), n, _pct(n / max(analysis.paths.sessions, 1))] for path, n in analysis.paths.top]
    doc.table(["path (repeats collapsed)", "sessions", "share"], rows)
    doc.image("Stage path flow", plots["flow"])
    _time_section(doc, analysis, plots["time_to_convert"])
    _segments_section(doc, analysis, plots["segments"])
    _categories_section(doc, analysis)
    doc.heading(2, "Method")
    doc.bullets(
        [
            "stages per event (journey/stages.py): purchase; post_purchase after a purchase in the session; "
            "discovery for a view of an item the session had not touched; consideration otherwise",
            f"chains over {list(STAGE_STATES)}: maximum likelihood per row, each session's last event -> exit",
            "absorbing view: purchase and exit absorbing, N = (I - Q)^-1, B = N R (journey/chain.py)",
            "no hidden-Markov alternative was fitted (see training/analysis/journey.py)",
        ]
    )
    return doc


def write_report(analysis: JourneyAnalysis, out_dir: Path) -> tuple[Path, Path]:
    """report.md + report.html + the PNGs + analysis.json + chain.json into `out_dir`; returns (md, html)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "funnel": _funnel_plot(analysis, out_dir),
        "transitions": _transitions_plot(analysis, out_dir),
        "flow": _flow_plot(analysis, out_dir),
        "conversion": _conversion_plot(analysis, out_dir),
        "time_to_convert": _time_plot(analysis, out_dir),
        "segments": _segments_plot(analysis, out_dir),
    }
    doc = _render(analysis, plots)
    report, page = out_dir / REPORT_FILE, out_dir / HTML_FILE
    report.write_text(doc.markdown(), encoding="utf-8")
    page.write_text(doc.html(f"Journey analysis: {analysis.dataset}"), encoding="utf-8")
    (out_dir / ANALYSIS_FILE).write_text(json.dumps(analysis.to_dict(), indent=1, default=str), encoding="utf-8")
    analysis.artifact().save(out_dir / CHAIN_FILE)
    return report, page
