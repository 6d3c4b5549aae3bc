"""Standard next-item evaluation protocols: the published preprocessing, so figures compare with papers.

    prepare(events, protocol, seed=...)  -> ProtocolData: SessionData to fit every kind on, the test prefixes, the
                                            preprocessing funnel and the split (all said in the report)

`srgnn` reproduces SR-GNN's Diginetica preprocessing (Wu et al., AAAI 2019, `datasets/preprocess.py`; the same
steps as NARM's and STAMP's), on a stored dataset's canonical events:

1. clicks: the `view` events, in time order within each session (ties by event id). Carts, removals and purchases
   are dropped: the published sets are click logs (a purchase is a click on the item the session already viewed).
2. sessions with a single click are dropped.
3. items clicked fewer than 5 times, counted over the sessions left (train and test alike, as published), are
   removed from the sessions, and sessions left with fewer than 2 clicks are dropped. One pass, as published: it is
   not iterated to a fixpoint, so a few items kept may end up with fewer than 5 clicks.
4. split by time: a session's time is its first click; test = the sessions starting after (latest start - 7 days),
   train = the others. (SR-GNN's dates are days, and sessions dated exactly on the cut day fall in neither part;
   with start times in microseconds a session on the cut goes to train.) A log whose session starts span less than
   14 days has no 7 days to spare: test = the sessions starting in the last 20% of that span, and the report says
   so.
5. test sessions keep only items seen in the training sessions; those left with fewer than 2 clicks are dropped.
6. every prefix predicts its next item: a session [i1 .. in] gives [i1] -> i2, [i1, i2] -> i3, ..., [i1 .. in-1]
   -> in; the training sessions are augmented the same way.
7. validation (for the kinds that stop early, and for `--kind auto`'s choice): the last 10% of the training
   sessions by start time, filtered as step 5 filters the test (items seen in the other 90%, >= 2 clicks) (SR-GNN's
   `--validation` holds out 10% of the training examples at random); every kind, baselines too, is fitted on the
   other 90%.

`session-split` does the same with step 4 replaced by a seeded random 20% of the sessions as test (and a random 10%
of the rest as validation): no time order, as in papers that split sessions at random.

Inputs are what serving builds (`journey.model_inputs.next_item_inputs`, checked by a test): item_ids [n, T] the
prefix's newest T = seq_len raw item ids, right-padded with 0; event_types [n, T] the `view` code, PAD after the
prefix; lengths [n]. So every kind's `Recommender` runs on them unchanged; a GRU sees the last 12 clicks of a
prefix (the published models read whole sessions), the baselines only the last one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journey.contracts import ITEM, SESSION
from journey.errors import InvalidInputError
from journey.model_inputs import PAD, NextItemInputSpec
from training.models.next_item.base import Inputs, SessionData

ProtocolName = Literal["srgnn", "session-split"]
PROTOCOLS: Final[tuple[str, ...]] = ("srgnn", "session-split")
MIN_ITEM_CLICKS: Final = 5
MIN_SESSION_CLICKS: Final = 2
TEST_DAYS: Final = 7
MIN_DAYS_FOR_TEST_DAYS: Final = 14
SHORT_LOG_TEST_FRACTION: Final = 0.2
RANDOM_TEST_FRACTION: Final = 0.2
VALID_FRACTION: Final = 0.1
COLUMNS: Final = ["event_id", SESSION, ITEM, "event_type", "event_timestamp"]


@dataclass(frozen=True)
class Clicks:
    """Clicks grouped by session (each session's clicks contiguous, in time order)."""

    session: np.ndarray  # int64 session code [n]
    item: np.ndarray  # int64 raw item id [n]
    time: np.ndarray  # int64 microseconds since the epoch [n]

    def __len__(self) -> int:
        return len(self.item)

    def where(self, keep: np.ndarray) -> Clicks:
        return Clicks(self.session[keep], self.item[keep], self.time[keep])

    def counts(self) -> dict[str, int]:
        return {"clicks": len(self), "sessions": len(np.unique(self.session)), "items": len(np.unique(self.item))}


@dataclass(frozen=True)
class Prefixes:
    """Every prefix of some sessions as the recommender's inputs, its next item as label, its session as group."""

    inputs: Inputs
    labels: np.ndarray  # int64 [n] raw item ids
    groups: np.ndarray  # int64 [n] session codes (the bootstrap resamples sessions)


@dataclass(frozen=True)
class ProtocolData:
    protocol: str
    data: SessionData  # train (90%) and validation prefixes: what every kind is fitted on
    test: Prefixes
    funnel: list[dict[str, Any]]  # each preprocessing step and the clicks, sessions and items it leaves
    split: dict[str, Any]  # how train and test were cut (method, cut time, sessions per part, notes)
    notes: list[str] = field(default_factory=list)


def clicks_of(events: pa.Table) -> Clicks:
    """Step 1: the views, sorted by (session, time, event id), with integer session codes."""
    views = events.filter(pc.equal(events["event_type"], "view"))
    order = pc.sort_indices(
        views, sort_keys=[(SESSION, "ascending"), ("event_timestamp", "ascending"), ("event_id", "ascending")]
    )
    views = views.take(order)
    sessions = pc.dictionary_encode(views[SESSION].combine_chunks())
    times = pc.cast(views["event_timestamp"], pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return Clicks(
        sessions.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        views[ITEM].to_numpy().astype(np.int64),
        times.to_numpy().astype(np.int64),
    )


def session_sizes(clicks: Clicks) -> np.ndarray:
    """Each click's session's click count."""
    _, inverse, counts = np.unique(clicks.session, return_inverse=True, return_counts=True)
    sizes: np.ndarray = counts[inverse.reshape(-1)]
    return sizes


def filter_sessions_and_items(clicks: Clicks, funnel: list[dict[str, Any]]) -> Clicks:
    """Steps 2 and 3 (one pass each, as published), each step's counts appended to `funnel`."""
    clicks = clicks.where(session_sizes(clicks) >= MIN_SESSION_CLICKS)
    funnel.append({"step": f"sessions with >= {MIN_SESSION_CLICKS} clicks", **clicks.counts()})
    _, inverse, counts = np.unique(clicks.item, return_inverse=True, return_counts=True)
    clicks = clicks.where(counts[inverse.reshape(-1)] >= MIN_ITEM_CLICKS)
    clicks = clicks.where(session_sizes(clicks) >= MIN_SESSION_CLICKS)
    funnel.append(
        {"step": f"items clicked >= {MIN_ITEM_CLICKS} times, then sessions with >= 2 clicks", **clicks.counts()}
    )
    return clicks


def session_starts(clicks: Clicks) -> tuple[np.ndarray, np.ndarray]:
    """Session codes (sorted) and each one's first click time."""
    codes, inverse = np.unique(clicks.session, return_inverse=True)
    starts = np.full(len(codes), np.iinfo(np.int64).max)
    np.minimum.at(starts, inverse.reshape(-1), clicks.time)
    return codes, starts


def time_test_sessions(clicks: Clicks) -> tuple[np.ndarray, dict[str, Any]]:
    """Step 4 (srgnn): the test sessions' codes and how they were chosen."""
    codes, starts = session_starts(clicks)
    first, last = int(starts.min()), int(starts.max())
    span_days = (last - first) / 86_400e6
    if span_days >= MIN_DAYS_FOR_TEST_DAYS:
        cut = last - TEST_DAYS * 86_400_000_000
        method = f"test = sessions starting in the last {TEST_DAYS} days"
    else:
        cut = first + round((1 - SHORT_LOG_TEST_FRACTION) * (last - first))
        method = (
            f"the session starts span {span_days:.2f} days (< {MIN_DAYS_FOR_TEST_DAYS}): test = sessions starting "
            f"in the last {SHORT_LOG_TEST_FRACTION:.0%} of that span instead of the last {TEST_DAYS} days"
        )
    cut_at = np.datetime64(cut, "us").astype(str) + "Z"
    return codes[starts > cut], {"method": method, "cut": cut_at, "span_days": round(span_days, 3)}


def random_test_sessions(clicks: Clicks, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Step 4 (session-split): a seeded random share of the sessions."""
    codes = np.unique(clicks.session)
    chosen = np.random.default_rng(seed).random(len(codes)) < RANDOM_TEST_FRACTION
    return codes[chosen], {"method": f"test = a random {RANDOM_TEST_FRACTION:.0%} of the sessions (seed {seed})"}


def validation_sessions(train: Clicks, protocol: str, seed: int) -> np.ndarray:
    """Step 7: the training sessions held out for validation (the newest 10%, or a random 10%)."""
    codes, starts = session_starts(train)
    n_valid = max(1, round(len(codes) * VALID_FRACTION))
    if protocol == "srgnn":
        order = np.lexsort((codes, starts))
    else:
        order = np.random.default_rng(seed + 1).permutation(len(codes))
    chosen: np.ndarray = codes[order[len(codes) - n_valid :]]
    return chosen


def prefixes(clicks: Clicks, spec: NextItemInputSpec) -> Prefixes:
    """Step 6: every prefix of every session -> its next click, as right-padded inputs of the newest `seq_len`."""
    n, width = len(clicks), spec.seq_len
    first = np.ones(n, dtype=bool)
    first[1:] = clicks.session[1:] != clicks.session[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    targets = np.flatnonzero(~first)  # every click but a session's first is some prefix's next item
    lengths = np.minimum(targets - start[targets], width).astype(np.int64)
    valid = np.arange(width)[None, :] < lengths[:, None]
    positions = np.clip((targets - lengths)[:, None] + np.arange(width)[None, :], 0, max(n - 1, 0))
    view = spec.event_types.index("view") + 1  # model_inputs codes event types from 1 in spec order
    inputs = {
        "item_ids": np.where(valid, clicks.item[positions], 0).astype(np.int64),
        "event_types": np.where(valid, view, PAD).astype(np.int64),
        "lengths": lengths,
    }
    return Prefixes(inputs, clicks.item[targets], clicks.session[targets])


def prepare(events: pa.Table, protocol: str, *, seed: int = 0, spec: NextItemInputSpec | None = None) -> ProtocolData:
    """Steps 1-7 of `protocol` on a dataset's canonical events (see the module docstring).

    Raises InvalidInputError naming the protocol when it is unknown, and the funnel when too little is left to fit
    and test on (no training, validation or test prefix).
    """
    if protocol not in PROTOCOLS:
        raise InvalidInputError(f"unknown protocol {protocol!r}; known: {list(PROTOCOLS)}", field="protocol")
    spec = spec or NextItemInputSpec()
    clicks = clicks_of(events.select(COLUMNS))
    funnel = [{"step": "events", "clicks": events.num_rows}, {"step": "views (clicks)", **clicks.counts()}]
    clicks = filter_sessions_and_items(clicks, funnel)
    _refuse_if_empty(clicks, "after the filters", funnel)
    chosen, split = time_test_sessions(clicks) if protocol == "srgnn" else random_test_sessions(clicks, seed)
    in_test = np.isin(clicks.session, chosen)
    train, test = clicks.where(~in_test), clicks.where(in_test)
    test = test.where(np.isin(test.item, np.unique(train.item)))
    test = test.where(session_sizes(test) >= MIN_SESSION_CLICKS)
    funnel.append({"step": "train sessions", **train.counts()})
    funnel.append({"step": "test sessions, items seen in training, >= 2 clicks", **test.counts()})
    _refuse_if_empty(train, "in the training part", funnel)
    _refuse_if_empty(test, "in the test part", funnel)
    held_out = np.isin(train.session, validation_sessions(train, protocol, seed))
    _refuse_if_empty(train.where(~held_out), "to fit on after the validation hold-out", funnel)
    fit_clicks = train.where(~held_out)
    fit, valid = prefixes(fit_clicks, spec), prefixes(_like_the_test(train.where(held_out), fit_clicks, funnel), spec)
    data = SessionData(
        fit.inputs, fit.labels, valid.inputs, valid.labels, train_sessions=fit.groups, valid_sessions=valid.groups
    )
    test_prefixes = prefixes(test, spec)
    split |= {
        "sessions": {"fit": _sessions(fit), "valid": _sessions(valid), "test": _sessions(test_prefixes)},
        "prefixes": {"fit": len(fit.labels), "valid": len(valid.labels), "test": len(test_prefixes.labels)},
    }
    return ProtocolData(protocol, data, test_prefixes, funnel, split)


def _like_the_test(valid: Clicks, fit: Clicks, funnel: list[dict[str, Any]]) -> Clicks:
    """Step 7's validation sessions filtered as step 5 filters the test ones (items seen in the fitted sessions,
    sessions of >= 2 clicks left), so that choosing on validation (early stopping, `--kind auto`) sees the task the
    test poses: unfiltered, most validation next items were never seen in fitting, which no index kind can name and
    a network's copy of the session's own items can, and the choice went the opposite way of the test. When nothing
    is left the unfiltered sessions are kept (noted in the funnel): a small log still gets a validation split."""
    kept = valid.where(np.isin(valid.item, np.unique(fit.item)))
    kept = kept.where(session_sizes(kept) >= MIN_SESSION_CLICKS)
    if len(kept) == 0:
        funnel.append(
            {"step": "validation sessions (none left filtered as the test: kept unfiltered)", **valid.counts()}
        )
        return valid
    funnel.append({"step": "validation sessions, items seen in fitting, >= 2 clicks", **kept.counts()})
    return kept


def _sessions(part: Prefixes) -> int:
    return len(np.unique(part.groups))


def _refuse_if_empty(clicks: Clicks, where: str, funnel: list[dict[str, Any]]) -> None:
    if len(clicks) == 0:
        steps = "; ".join(
            f"{s['step']}: {s.get('clicks', 0):,} clicks, {s.get('sessions', '?')} sessions" for s in funnel
        )
        raise InvalidInputError(f"no session left {where} ({steps}): the dataset is too small", field="dataset")
