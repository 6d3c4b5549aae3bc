"""Absorbing Markov chains over journey states (stages or event types), estimated from sessions.

One estimated chain, two views of it:

- **full chain** (the transition heatmap): states = the four stages + `exit` (or the four event types + `exit`),
  rows = from. Purchase is a stage sessions pass *through* (purchase -> post_purchase), so here only `exit` absorbs.
  Its fundamental matrix gives the events a session has left and where it will end (the drop-off point).
- **conversion view**: `purchase` and `exit` absorbing, every other state transient. With Q the transient-to-
  transient block and R the transient-to-absorbing one, N = (I - Q)^-1 counts the expected visits to each transient
  state, B = N R the probability of ending in each absorbing state (P(eventual purchase) = B[:, purchase]),
  t = N 1 the expected events before absorption, and (N b) / b the expected events before a purchase given that
  one happens (b = B[:, purchase]; the h-transform of the chain conditioned on converting).

Steps count events: from state s, `expected_steps[s]` is the number of events from the current one (included) until
the chain leaves the transient states. `post_purchase` stays transient in the conversion view, so its B is the
chance of a further purchase in the same session.

Only numpy (and `journey.contracts`) is imported, so serving loads chains without any training code. The artifact
`journey analyze` writes and serving answers `/journey` from is `journey.chain_artifact`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from journey.contracts import STAGES

EXIT: Final = "exit"
PURCHASE: Final = "purchase"
STAGE_STATES: Final = (*STAGES, EXIT)
CONVERSION: Final = (PURCHASE, EXIT)  # absorbing states of the conversion view
_TOL: Final = 1e-9


def _floats(values: np.ndarray) -> Any:
    """JSON-ready nested lists; NaN (undefined, e.g. steps to a purchase that never happens) becomes null."""
    listed = np.asarray(values, dtype=np.float64).tolist()

    def clean(v: Any) -> Any:
        if isinstance(v, list):
            return [clean(x) for x in v]
        return None if isinstance(v, float) and math.isnan(v) else v

    return clean(listed)


@dataclass(frozen=True)
class AbsorbingChain:
    """The absorbing view of a chain: fundamental matrix N, absorption probabilities B = N R (rows = transient)."""

    transient: tuple[str, ...]
    absorbing: tuple[str, ...]
    fundamental: np.ndarray  # N: expected visits, transient x transient
    absorption: np.ndarray  # B: transient x absorbing

    @property
    def expected_steps(self) -> np.ndarray:
        """Expected events until absorption, the current one included, per transient state."""
        result: np.ndarray = self.fundamental.sum(axis=1)
        return result

    def probability(self, state: str, target: str) -> float:
        """P(ending in `target`) from `state`; an absorbing state has already ended where it is."""
        column = _index(self.absorbing, target)
        if state in self.absorbing:
            return float(state == target)
        return float(self.absorption[_index(self.transient, state), column])

    def conditional_steps(self, target: str) -> np.ndarray:
        """Expected events before absorption given that it is in `target` (NaN where that cannot happen)."""
        b = self.absorption[:, _index(self.absorbing, target)]
        with np.errstate(divide="ignore", invalid="ignore"):
            result: np.ndarray = np.where(b > _TOL, (self.fundamental @ b) / np.where(b > _TOL, b, 1.0), np.nan)
        return result

    def from_distribution(self, states: Sequence[str], distribution: np.ndarray) -> dict[str, float]:
        """Absorption probabilities of a chain started from `distribution` over `states` (e.g. the initial one)."""
        out = dict.fromkeys(self.absorbing, 0.0)
        for state, weight in zip(states, np.asarray(distribution, dtype=np.float64), strict=True):
            if weight == 0:
                continue
            for target in self.absorbing:
                out[target] += float(weight) * self.probability(state, target)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "transient": list(self.transient),
            "absorbing": list(self.absorbing),
            "fundamental": _floats(self.fundamental),
            "absorption": _floats(self.absorption),
            "expected_steps": _floats(self.expected_steps),
        }


def _index(states: Sequence[str], state: str) -> int:
    try:
        return list(states).index(state)
    except ValueError:
        raise ValueError(f"unknown state {state!r}; known: {list(states)}") from None


@dataclass(frozen=True)
class MarkovChain:
    """A row-stochastic chain with one terminal (absorbing) state, optionally with the counts it was estimated from.

    Rows that were never observed (a state no session visited) go straight to the terminal state: no evidence of
    any path, so no purchase is credited to them; `observed` says which rows have data.
    """

    states: tuple[str, ...]
    transitions: np.ndarray
    initial: np.ndarray
    counts: np.ndarray | None = None
    initial_counts: np.ndarray | None = None
    terminal: str = EXIT

    def __post_init__(self) -> None:
        n = len(self.states)
        p, start = np.asarray(self.transitions, dtype=np.float64), np.asarray(self.initial, dtype=np.float64)
        problems = []
        if len(set(self.states)) != n or self.terminal not in self.states:
            problems.append(f"states must be distinct and include {self.terminal!r}, got {list(self.states)}")
        elif p.shape != (n, n) or start.shape != (n,):
            problems.append(f"need a {n}x{n} matrix and {n} initial values, got {p.shape} and {start.shape}")
        elif (p < -_TOL).any() or np.abs(p.sum(axis=1) - 1).max() > 1e-6:
            problems.append("every row must be a probability distribution (non-negative, summing to 1)")
        elif p[self.states.index(self.terminal), self.states.index(self.terminal)] < 1 - 1e-6:
            problems.append(f"the terminal state {self.terminal!r} must be absorbing (its row all on itself)")
        elif start.size and ((start < -_TOL).any() or abs(start.sum() - 1) > 1e-6):
            problems.append("the initial distribution must be non-negative and sum to 1")
        if problems:
            raise ValueError(problems[0])
        object.__setattr__(self, "transitions", p)
        object.__setattr__(self, "initial", start)

    # ---------------------------------------------------------------------------------------------- construction

    @classmethod
    def from_counts(
        cls, states: Sequence[str], counts: np.ndarray, initial_counts: np.ndarray, terminal: str = EXIT
    ) -> MarkovChain:
        """Maximum-likelihood chain: each row's counts over its total (see the class docstring for empty rows)."""
        counts = np.asarray(counts, dtype=np.int64)
        initial_counts = np.asarray(initial_counts, dtype=np.int64)
        states = tuple(states)
        end = _index(states, terminal)
        totals = counts.sum(axis=1)
        p = np.zeros(counts.shape, dtype=np.float64)
        seen = totals > 0
        p[seen] = counts[seen] / totals[seen, None]
        p[~seen, end] = 1.0
        p[end] = 0.0
        p[end, end] = 1.0
        started = int(initial_counts.sum())
        start = initial_counts / started if started else np.zeros(len(states))
        return cls(states, p, start, counts, initial_counts, terminal)

    @classmethod
    def from_probabilities(
        cls,
        states: Sequence[str],
        transitions: Sequence[Sequence[float]] | np.ndarray,
        initial: Sequence[float] | np.ndarray | None = None,
        terminal: str = EXIT,
    ) -> MarkovChain:
        """A chain given by its matrix (hand-made chains, configs); `initial` defaults to the first state."""
        states = tuple(states)
        start = np.eye(len(states))[0] if initial is None else np.asarray(initial, dtype=np.float64)
        return cls(states, np.asarray(transitions, dtype=np.float64), start, terminal=terminal)

    # ----------------------------------------------------------------------------------------------------- reads

    def index(self, state: str) -> int:
        return _index(self.states, state)

    @property
    def observed(self) -> np.ndarray:
        """Rows estimated from data (all True for a chain given by probabilities)."""
        if self.counts is None:
            return np.ones(len(self.states), dtype=bool)
        result: np.ndarray = self.counts.sum(axis=1) > 0
        return result

    def next_distribution(self, state: str) -> dict[str, float]:
        return {s: float(v) for s, v in zip(self.states, self.transitions[self.index(state)], strict=True)}

    def most_likely_next(self, state: str, *, include_terminal: bool = True) -> tuple[str, float]:
        """The likeliest next state (ties: the earlier state) and its probability."""
        row = self.transitions[self.index(state)].copy()
        if not include_terminal:
            row[self.index(self.terminal)] = -1.0
        best = int(np.argmax(row))
        return self.states[best], float(max(row[best], 0.0))

    def absorbing(self, absorbing: Sequence[str] | None = None) -> AbsorbingChain:
        """The absorbing view with `absorbing` states (default: the terminal one only; `CONVERSION` for purchases)."""
        chosen = tuple(absorbing) if absorbing is not None else (self.terminal,)
        if self.terminal not in chosen:
            chosen = (*chosen, self.terminal)
        a = [self.index(s) for s in chosen]
        t = [i for i in range(len(self.states)) if i not in a]
        q = self.transitions[np.ix_(t, t)]
        r = self.transitions[np.ix_(t, a)]
        try:
            fundamental = np.linalg.inv(np.eye(len(t)) - q)
        except np.linalg.LinAlgError:
            raise ValueError(f"no absorbing state is reachable from every state of {list(self.states)}") from None
        return AbsorbingChain(tuple(self.states[i] for i in t), chosen, fundamental, fundamental @ r)

    def hit_probability(self, target: str, absorbing: Sequence[str] = CONVERSION) -> np.ndarray:
        """P(`target` happens at a later event of the session) per state, `absorbing` stopping the walk.

        For a transient state this is its absorption probability B; for `target` itself it is the chance of it
        happening *again* (e.g. a second purchase), which B cannot say because there the walk has stopped.
        """
        view = self.absorbing(absorbing)
        h = np.zeros(len(self.states))
        for i, state in enumerate(self.states):
            if state in view.transient:
                h[i] = view.probability(state, target)
            else:
                h[i] = float(state == target)
        result: np.ndarray = self.transitions @ h
        return result

    def exit_points(self, state: str) -> dict[str, float]:
        """Where a session now in `state` will end: P(its last event is in each non-terminal state)."""
        view = self.absorbing()
        rate = self.transitions[[self.index(s) for s in view.transient], self.index(self.terminal)]
        spread = view.fundamental[_index(view.transient, state)] * rate
        return {s: float(v) for s, v in zip(view.transient, spread, strict=True)}

    # ------------------------------------------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the matrix and its counts, plus the derived conversion figures for people reading the file."""
        out: dict[str, Any] = {
            "states": list(self.states),
            "terminal": self.terminal,
            "transitions": _floats(self.transitions),
            "initial": _floats(self.initial),
        }
        if self.counts is not None and self.initial_counts is not None:
            out["counts"] = self.counts.tolist()
            out["initial_counts"] = self.initial_counts.tolist()
        if PURCHASE in self.states:
            conversion = self.absorbing(CONVERSION)
            out["conversion"] = {
                **conversion.to_dict(),
                "purchase_probability": _floats(self.hit_probability(PURCHASE)),
                "steps_to_purchase": _floats(conversion.conditional_steps(PURCHASE)),
            }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MarkovChain:
        """Inverse of `to_dict`; counts win over the stored probabilities when both are present."""
        try:
            states, terminal = tuple(data["states"]), str(data.get("terminal", EXIT))
            if "counts" in data and "initial_counts" in data:
                return cls.from_counts(states, np.asarray(data["counts"]), np.asarray(data["initial_counts"]), terminal)
            return cls.from_probabilities(states, data["transitions"], data["initial"], terminal)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a Markov chain document: missing or malformed {exc}") from None
