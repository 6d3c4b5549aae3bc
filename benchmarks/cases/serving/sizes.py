"""How much the serving case builds and sends: `--quick` is a smoke run, the default is what `make bench` reports."""

from __future__ import annotations

from dataclasses import dataclass

CASE_NAME = "serving"


@dataclass(frozen=True)
class Sizes:
    """Events and training examples of the deployment, then rounds and requests of the measurements."""

    events: int
    max_examples: int
    rounds: int  # (a)(b)(c): rounds of the interleaving
    per_round: int  # (a)(b): requests per server per round
    per_round_100: int  # (c)
    windows: int  # (d): timed windows per server
    window_s: float  # (d): seconds per window


QUICK = Sizes(events=40_000, max_examples=10_000, rounds=10, per_round=40, per_round_100=10, windows=2, window_s=3.0)
FULL = Sizes(events=60_000, max_examples=20_000, rounds=25, per_round=120, per_round_100=30, windows=4, window_s=5.0)
