"""The generator's config: latent segments (their stage chains), catalogue, timing and bots, loaded from YAML into
typed models that refuse unknown keys and inconsistent values. `DEFAULT_SEGMENTS` and the other defaults are the
same as `synthetic_default.yaml`."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Self

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from journey.errors import ConfigError

STAGES: tuple[str, ...] = ("discovery", "consideration", "purchase", "post_purchase", "exit")
EXIT = 4
BOT_SEGMENT = "bot"
DEFAULT_CONFIG_PATH = Path(__file__).parent.with_name("synthetic_default.yaml")
_TOL = 1e-9


def _check_distribution(row: tuple[float, ...], what: str) -> None:
    if len(row) != len(STAGES):
        raise ValueError(f"{what} has {len(row)} values, needs {len(STAGES)} (one per stage {list(STAGES)})")
    if min(row) < 0:
        raise ValueError(f"{what} has a negative probability: {list(row)}")
    if abs(sum(row) - 1.0) > _TOL:
        raise ValueError(f"{what} sums to {sum(row):.12g}, must sum to 1")


class SegmentConfig(BaseModel):
    """One latent shopper type: how its sessions start and move between stages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(ge=0, le=1, description="Fraction of users in this segment.")
    sessions_per_user: float = Field(ge=0, description="Mean of the Poisson number of sessions beyond the first.")
    intent: float = Field(ge=0, le=1, description="Probability that a new item is from the preferred category.")
    initial: tuple[float, ...] = Field(description="First-stage probabilities over STAGES (exit must be 0).")
    transitions: tuple[tuple[float, ...], ...] = Field(description="5x5 stage transition matrix, rows = from.")

    @field_validator("initial")
    @classmethod
    def _initial_ok(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        _check_distribution(v, "initial distribution")
        if v[EXIT] != 0:
            raise ValueError("a session cannot start in exit: its initial probability must be 0")
        return v

    @field_validator("transitions")
    @classmethod
    def _transitions_ok(cls, v: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
        if len(v) != len(STAGES):
            raise ValueError(f"must be {len(STAGES)}x{len(STAGES)} (rows/columns {list(STAGES)}), got {len(v)} rows")
        for stage, row in zip(STAGES, v, strict=True):
            _check_distribution(row, f"row {stage!r}")
        if v[EXIT][EXIT] != 1:
            raise ValueError("exit must be absorbing: its row must be [0, 0, 0, 0, 1]")
        reach = np.zeros(len(STAGES), dtype=bool)
        reach[EXIT] = True
        for _ in STAGES:
            reach |= (np.asarray(v)[:, reach] > 0).any(axis=1)
        if not reach.all():
            stuck = [s for s, ok in zip(STAGES, reach, strict=True) if not ok]
            raise ValueError(f"exit is unreachable from {stuck}: sessions there would never end")
        return v

    def expected_events_per_session(self) -> float:
        """Mean walk length before exit (fundamental matrix of the absorbing chain), ignoring the length cap."""
        q = np.asarray(self.transitions)[:EXIT, :EXIT]
        visits = np.linalg.solve(np.eye(EXIT) - q.T, np.asarray(self.initial)[:EXIT])
        return float(visits.sum())


def _segment(share: float, rate: float, intent: float, initial: list[float], rows: list[list[float]]) -> SegmentConfig:
    return SegmentConfig(
        share=share,
        sessions_per_user=rate,
        intent=intent,
        initial=tuple(initial),
        transitions=tuple(tuple(r) for r in rows),
    )


_EXIT_ROW = [0.0, 0.0, 0.0, 0.0, 1.0]
DEFAULT_SEGMENTS: dict[str, SegmentConfig] = {
    "browser": _segment(
        0.55,
        1.5,
        0.4,
        [0.95, 0.05, 0, 0, 0],
        [
            [0.75, 0.09, 0.002, 0.0, 0.158],
            [0.08, 0.28, 0.04, 0.0, 0.60],
            [0, 0, 0, 0.30, 0.70],
            [0, 0, 0, 0.25, 0.75],
            _EXIT_ROW,
        ],
    ),
    "deal_seeker": _segment(
        0.30,
        3.0,
        0.6,
        [0.90, 0.10, 0, 0, 0],
        [
            [0.75, 0.15, 0.005, 0.0, 0.095],
            [0.06, 0.38, 0.065, 0.0, 0.495],
            [0, 0, 0, 0.35, 0.65],
            [0, 0, 0, 0.25, 0.75],
            _EXIT_ROW,
        ],
    ),
    "loyal_buyer": _segment(
        0.15,
        4.0,
        0.85,
        [0.75, 0.25, 0, 0, 0],
        [
            [0.67, 0.22, 0.01, 0.0, 0.10],
            [0.05, 0.42, 0.15, 0.0, 0.38],
            [0, 0, 0, 0.45, 0.55],
            [0, 0, 0, 0.30, 0.70],
            _EXIT_ROW,
        ],
    ),
}
DEFAULT_HOURLY = (
    0.25,
    0.15,
    0.10,
    0.08,
    0.08,
    0.10,
    0.20,
    0.35,
    0.50,
    0.60,
    0.65,
    0.70,
    0.75,
    0.70,
    0.65,
    0.65,
    0.70,
    0.80,
    0.95,
    1.00,
    1.00,
    0.90,
    0.70,
    0.45,
)


class SyntheticConfig(BaseModel):
    """Everything that shapes a synthetic dataset; the same config and seed give the same tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(42, ge=0)
    n_users: int = Field(20_000, gt=0, description="Human users; bot users come on top (see bot_share).")
    n_items: int = Field(20_000, gt=0)
    n_categories: int = Field(50, gt=0)
    days: int = Field(30, gt=0, description="Sessions start within this many days from start_date.")
    start_date: date = Field(date(2026, 9, 1), description="Day 0, midnight UTC (fixed, so output is reproducible).")
    segments: dict[str, SegmentConfig] = Field(default_factory=lambda: dict(DEFAULT_SEGMENTS))
    zipf_exponent: float = Field(1.1, gt=0, description="Item popularity ~ 1 / rank**exponent.")
    price_median: float = Field(25.0, gt=0)
    price_category_sigma: float = Field(0.8, ge=0, description="Spread of the categories' log median prices.")
    price_item_sigma: float = Field(0.5, ge=0, description="Spread of log prices within a category.")
    p_add_to_cart: float = Field(
        0.15, ge=0, le=1, description="Consideration step -> add_to_cart (see p_add_after_repeat_view)."
    )
    p_remove_from_cart: float = Field(0.06, ge=0, le=1, description="-> remove_from_cart (needs a non-empty cart).")
    p_add_after_repeat_view: float = Field(
        0.60, ge=0, le=1, description="Instead of p_add_to_cart right after a repeat view (a second look)."
    )
    p_repeat_last_item: float = Field(
        0.70, ge=0, le=1, description="A repeat view goes back to the item viewed last (else to any seen item)."
    )
    hourly_profile: tuple[float, ...] = Field(DEFAULT_HOURLY, description="Relative session starts per UTC hour.")
    gap_median_s: float = Field(40.0, gt=0, description="Median log-normal gap between events of a session.")
    gap_sigma: float = Field(1.1, ge=0)
    gap_min_s: float = Field(0.5, ge=0.001)
    gap_max_s: float = Field(1500.0, gt=0, description="Gaps are clipped here; must stay below the timeout.")
    session_timeout_s: int = Field(1800, gt=0, description="Sessionisation timeout the data is built for.")
    session_gap_extra_mean_s: float = Field(3600.0, ge=0, description="Mean extra pause beyond the timeout.")
    bot_share: float = Field(0.005, ge=0, lt=0.5, description="Fraction of all sessions that are bots.")
    bot_views: tuple[int, int] = Field((20, 120), description="Min and max views per bot session.")
    bot_gap_s: tuple[float, float] = Field((0.5, 2.0), description="Min and max gap between bot views.")
    max_events_per_session: int = Field(200, gt=0, description="Walks are forced to exit here (truncated).")

    @field_validator("segments")
    @classmethod
    def _segments_ok(cls, v: dict[str, SegmentConfig]) -> dict[str, SegmentConfig]:
        if not v:
            raise ValueError("at least one segment is needed")
        if BOT_SEGMENT in v:
            raise ValueError(f"{BOT_SEGMENT!r} is reserved for bot users")
        total = sum(s.share for s in v.values())
        if abs(total - 1.0) > _TOL:
            raise ValueError(f"shares sum to {total:.12g}, must sum to 1")
        return v

    @field_validator("hourly_profile")
    @classmethod
    def _hourly_ok(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) != 24 or min(v) < 0 or sum(v) <= 0:
            raise ValueError(f"needs 24 non-negative weights with a positive sum, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        checks = [
            (self.n_categories <= self.n_items, "n_categories must not exceed n_items"),
            (
                max(self.p_add_to_cart, self.p_add_after_repeat_view) + self.p_remove_from_cart <= 1,
                "p_add_to_cart (and p_add_after_repeat_view) + p_remove_from_cart must be <= 1",
            ),
            (
                self.gap_min_s <= self.gap_max_s < self.session_timeout_s,
                "need gap_min_s <= gap_max_s < session_timeout_s, or sessionisation would split sessions",
            ),
            (1 <= self.bot_views[0] <= self.bot_views[1], "bot_views must be [min, max] with 1 <= min <= max"),
            (
                0.001 <= self.bot_gap_s[0] <= self.bot_gap_s[1] < self.session_timeout_s,
                "bot_gap_s must be [min, max] with 0.001 <= min <= max < session_timeout_s",
            ),
        ]
        problems = [msg for ok, msg in checks if not ok]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def from_yaml(cls, path: Path) -> SyntheticConfig:
        """Load a config file (missing keys take defaults); every problem names the file and the field path."""
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read generator config: {exc}", path=str(path)) from exc
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError("generator config must be a YAML mapping", path=str(path))
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(problems, path=str(path)) from exc

    def expected_events_per_user(self) -> float:
        """Mean events per human user, bot events included (they scale with the human sessions)."""
        sessions = sum(s.share * (1 + s.sessions_per_user) for s in self.segments.values())
        human = sum(
            s.share * (1 + s.sessions_per_user) * s.expected_events_per_session() for s in self.segments.values()
        )
        bots = sessions * self.bot_share / (1 - self.bot_share) * (self.bot_views[0] + self.bot_views[1]) / 2
        return human + bots

    def scaled_to(self, n_events: int) -> SyntheticConfig:
        """The same config with n_users set so that about `n_events` events come out (benchmarks, scale tests)."""
        return self.model_copy(update={"n_users": max(1, round(n_events / self.expected_events_per_user()))})
