"""The journey report: Markdown + HTML with PNG plots, one folder per dataset (reports/journey/<dataset>/).

    write_report(analysis, out_dir)   -> report.md, report.html, the plots (`plots.py`), analysis.json, chain.json

The Markdown and the HTML are rendered from the same blocks, so both say the same.
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
from training.analysis.delays import BUCKETS, MATERIAL_COUNT, MATERIAL_SHARE
from training.analysis.plots import draw_plots, pct
from training.analysis.results import GroupStats, JourneyAnalysis

REPORT_FILE: Final = "report.md"
HTML_FILE: Final = "report.html"
ANALYSIS_FILE: Final = "analysis.json"
CHAIN_FILE: Final = "chain.json"


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
        [s, r, pct(share), pct(d), e]
        for s, r, share, d, e in zip(STAGES, f.reached, f.shares(), drops, f.ended, strict=True)
    ]
    doc.heading(2, "Funnel")
    doc.text("A session reaches a stage when its furthest stage (in funnel order) is at least that one.")
    doc.table(["stage", "sessions reaching", "share", "drop-off to next stage", "sessions ending here"], rows)
    doc.table(
        ["group", "sessions", *(f"reach {s}" for s in STAGES[1:])],
        [[g.label, g.sessions, *(pct(v) for v in g.funnel.shares()[1:])] for g in analysis.populated()],
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
    groups = analysis.populated()
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
    for group in analysis.populated():
        s = group.time_to_convert.summary()
        rows.append(
            [group.label, s["sessions"], s.get("seconds_median"), s.get("seconds_p90"), s.get("events_before_median")]
        )
    doc.table(["group", "converting sessions", "median seconds", "p90 seconds", "median events before"], rows)
    doc.image("Time to convert", plot)


_BEHAVIOUR_HEADERS: Final = {
    "frequency_sessions": "sessions/user",
    "recency_days": "recency days",
    "views_per_session": "views/session",
    "repeat_view_share": "repeat views",
    "cart_session_rate": "carting sessions",
    "category_focus": "category focus",
    "seconds_per_event": "seconds/event",
}
_SHARES: Final = ("repeat_view_share", "cart_session_rate", "category_focus")


def _segments_section(doc: _Doc, analysis: JourneyAnalysis, plot: str) -> None:
    profiles = analysis.profiles
    doc.heading(2, "User segments (k-means on behaviour before purchases; outcomes described, not clustered)")
    scores = ", ".join(f"k={k}: {v:.3f}" for k, v in sorted(profiles.silhouette_by_k.items())) or "none (too few users)"
    doc.text(f"k = {profiles.k} chosen by silhouette on a sample of users ({scores}); profiles as of {profiles.as_of}.")
    clustered = ", ".join(profiles.clustered_on)
    doc.text(
        f"Clustered on ({profiles.basis}): {clustered}; {profiles.basis_reason}. Every behaviour column counts only "
        "the events before each session's first purchase. Purchases, spend, session conversion and cart abandonment "
        "are the outcome: shown per segment, never clustered on (segments built on them read the label back: on a "
        "one-session-per-user log the sessions that bought come out as 'loyal buyers')."
    )
    columns = list(_BEHAVIOUR_HEADERS)
    rows = [
        [s.segment_id, s.name, s.users, g.sessions, *(_behaviour_cell(c, s.means.get(c)) for c in columns)]
        for s, g in zip(profiles.segments, analysis.segments, strict=True)
    ]
    marked = [f"{_BEHAVIOUR_HEADERS[c]}{' *' if c in profiles.clustered_on else ''}" for c in columns]
    doc.table(["id", "name", "users", "sessions", *marked], rows)
    doc.text("Columns marked * are clustered on; the others are described only.")
    rows = []
    for segment, group in zip(profiles.segments, analysis.segments, strict=True):
        o = segment.outcomes
        rows.append(
            [
                segment.segment_id, segment.name, pct(o.get("buyer_share")), pct(o.get("session_conversion_rate")),
                o.get("purchases_total"), o.get("monetary_value"), pct(o.get("cart_abandonment_rate")),
                group.conversion()["purchase_probability"]["discovery"],
            ]
        )  # fmt: skip
    header = ["id", "name", "buyers", "session conversion", "purchases/user", "spend/user", "cart abandonment"]
    doc.table([*header, "P(purchase) from discovery"], rows)
    doc.image("Segments", plot)


def _behaviour_cell(column: str, value: float | None) -> Any:
    return pct(value) if column in _SHARES else value


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
                group.label, group.sessions, pct(group.funnel.shares()[1]), pct(c["observed_conversion"]),
                c["purchase_probability"]["discovery"], group.time_to_convert.summary().get("seconds_median"),
            ]
        )  # fmt: skip
    header = ["entry category", "sessions", "reach consideration", "conversion", "P(purchase) from discovery"]
    doc.table([*header, "median seconds to convert"], rows)


def _delays_section(doc: _Doc, analysis: JourneyAnalysis) -> None:
    doc.heading(2, "Purchases and the views before them (any session)")
    delays = analysis.delays
    if delays is None or not delays.purchases:
        doc.text("No purchase in this dataset.")
        return
    doc.text(
        "Each purchase against the same user's views of the same item at or before it: how long after the last view "
        "(and the first) it came, and whether in the same session. Session-scoped labels (propensity 'buys within "
        "the session') and the session funnels above see only the first row."
    )
    last, first = delays.counts("last"), delays.counts("first")
    rows = [
        [bucket, a, pct(a / delays.purchases), b, pct(b / delays.purchases)]
        for bucket, a, b in zip(BUCKETS, last, first, strict=True)
    ]
    doc.table(["purchase came", "from last view", "share", "from first view", "share"], rows)
    s = delays.summary()
    doc.text(
        f"Hours from the last view: median {_fmt(s['hours_from_last_view_median'])}, p90 "
        f"{_fmt(s['hours_from_last_view_p90'])}; from the first view: median "
        f"{_fmt(s['hours_from_first_view_median'])}, p90 {_fmt(s['hours_from_first_view_p90'])}."
    )
    note = delays.note()
    if note:
        doc.text(f"Delayed purchases are material here: {note}.")
    else:
        doc.text(
            f"{delays.other_session():,} purchases ({pct(delays.other_session_share())}) come in another session than "
            f"the last view of their item, {pct(delays.later_share())} more than a day after it; material would be "
            f"{MATERIAL_COUNT}+ purchases and {pct(MATERIAL_SHARE)}+, so session-scoped labels miss few purchases here."
        )


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
    rows = [[" -> ".join(path), n, pct(n / max(analysis.paths.sessions, 1))] for path, n in analysis.paths.top]
    doc.table(["path (repeats collapsed)", "sessions", "share"], rows)
    doc.image("Stage path flow", plots["flow"])
    _time_section(doc, analysis, plots["time_to_convert"])
    _delays_section(doc, analysis)
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
    doc = _render(analysis, draw_plots(analysis, out_dir))
    report, page = out_dir / REPORT_FILE, out_dir / HTML_FILE
    report.write_text(doc.markdown(), encoding="utf-8")
    page.write_text(doc.html(f"Journey analysis: {analysis.dataset}"), encoding="utf-8")
    (out_dir / ANALYSIS_FILE).write_text(json.dumps(analysis.to_dict(), indent=1, default=str), encoding="utf-8")
    analysis.artifact().save(out_dir / CHAIN_FILE)
    return report, page
