"""Readable segment names from what defines a segment (its mean behaviour), never from what it did (its outcome).

    name_segments(means, overall, traits)   -> one distinct name per segment

A name says how the segment's shoppers behave against everybody: "cart users" cart in more of their sessions,
"frequent visitors" come back more, "window shoppers" view many items per session, "comparison shoppers" look at
items again, "bouncers" leave after a look. Names such as "loyal buyers" or "cart abandoners" are gone on purpose:
they named a segment by its conversion, which is the outcome the report shows beside the name (see `behaviour.py`).
Only the traits the segments were clustered on (plus views per session, described beside them) name or qualify
them: on a one-session log "frequent" would be noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

DESCRIBED: Final = ("views_per_session",)  # behaviour that may name a segment though k-means does not see it
# how to tell apart two segments that got the same name: (feature, word when higher, word when lower)
QUALIFIERS: Final = (
    ("frequency_sessions", "frequent", "occasional"),
    ("views_per_session", "long sessions", "short sessions"),
    ("repeat_view_share", "revisiting items", "one look per item"),
    ("cart_session_rate", "carting more", "carting less"),
    ("category_focus", "focused", "wide-ranging"),
    ("seconds_per_event", "slow-paced", "fast-paced"),
)
_MORE: Final = 1.5  # a segment stands out on a trait at 1.5x everybody's mean


def _base_name(seg: Mapping[str, float], overall: Mapping[str, float], traits: Sequence[str]) -> str:
    """A name from the segment's mean behaviour relative to everybody's (the first rule that holds)."""

    def stands_out(name: str) -> bool:
        return name in traits and seg[name] > 0 and seg[name] >= _MORE * overall[name]

    if stands_out("cart_session_rate") and seg["cart_session_rate"] >= 0.02:
        back = "frequency_sessions" in traits and seg["frequency_sessions"] >= overall["frequency_sessions"]
        return "returning cart users" if back else "cart users"
    if stands_out("frequency_sessions"):
        return "frequent visitors"
    if stands_out("views_per_session"):
        return "window shoppers"
    if stands_out("repeat_view_share"):
        return "comparison shoppers"
    if seg["views_per_session"] < _MORE and seg["seconds_per_event"] < overall["seconds_per_event"] / _MORE:
        return "bouncers"
    return "casual browsers"


def name_segments(
    means: Sequence[Mapping[str, float]], overall: Mapping[str, float], traits: Sequence[str]
) -> list[str]:
    """Readable, distinct names: colliding ones get the trait on which they differ most (relative to its mean)."""
    names = [_base_name(m, overall, traits) for m in means]
    qualifiers = [q for q in QUALIFIERS if q[0] in traits]
    for name in sorted(set(names)):
        group = [i for i, n in enumerate(names) if n == name]
        if len(group) < 2 or not qualifiers:
            continue
        spread = [
            (np.ptp([means[i][f] for i in group]) / max(abs(overall[f]), 1e-9), f, hi, lo) for f, hi, lo in qualifiers
        ]
        _, feature, higher, lower = max(spread)
        middle = float(np.median([means[i][feature] for i in group]))
        for i in group:
            names[i] = f"{name} ({higher if means[i][feature] > middle else lower})"
    seen: dict[str, int] = {}
    for i, name in enumerate(names):  # still equal (3+ alike): number them
        seen[name] = seen.get(name, 0) + 1
        names[i] = name if seen[name] == 1 else f"{name} #{seen[name]}"
    return names
