"""The next-item kinds by name: what `journey train next-item --kind` chooses, and what every run compares.

    KINDS[name].fit(data, seed, config=None, progress=None) -> a fitted base.Recommender (config: the kind's own,
                                                               its defaults when None)
    KINDS[name].baseline                                    an index kind: judged beside every model, every run
    KINDS[name].framework                                   the registry's `framework` of its versions
    BASELINES                                               the baseline kinds' names, in report order
    AUTO                                                    --kind auto: every kind fitted, the best on validation
                                                            served (selection.py)

    gru4rec       PyTorch GRU4Rec-style network, repeat-aware head (gru.py)              NextItemConfig
    sasrec        PyTorch SASRec causal self-attention, repeat-aware head (sasrec.py)    SASRecConfig
    popularity    the training split's most frequent next items (popularity.py)           PopularityConfig
    markov        P(next | last item), Dirichlet-smoothed towards popularity (markov.py)   MarkovConfig
    covisitation  what followed the session's items within a window (covisitation.py)    CovisitationConfig
    sknn          V-SKNN session-kNN over the training sessions (sknn.py)                  SknnConfig

A new kind (SASRec, ...) is one more entry: a module with its config and a fit returning a Recommender.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from journey.errors import InvalidInputError
from training.models.next_item.base import Recommender, SessionData
from training.models.next_item.covisitation import CovisitationConfig, fit_covisitation
from training.models.next_item.gru import NextItemConfig, fit_gru4rec
from training.models.next_item.markov import MarkovConfig, fit_markov
from training.models.next_item.popularity import PopularityConfig, fit_popularity
from training.models.next_item.sasrec import SASRecConfig, fit_sasrec
from training.models.next_item.sknn import SknnConfig, fit_sknn
from training.torch_loop import Progress

GRU4REC: Final = "gru4rec"
DEFAULT_KIND: Final = GRU4REC
AUTO: Final = "auto"  # not a kind: fit every kind and keep the best on the validation days (selection.py)
# An index kind is a graph built with onnx.helper from an index fitted in numpy: framework "onnx" in the registry
# (journey.registry.models.Framework, migration 0003) and in the file (journey.framework); params["kind"] names it.
INDEX_REGISTRY_FRAMEWORK: Final = "onnx"

Fit = Callable[..., Recommender]  # fit(data, *, config, seed, progress) -> fitted: keywords, so any kind plugs in


@dataclass(frozen=True)
class Kind:
    name: str
    config_type: type
    fit_with: Fit  # fit_with(data, config=..., seed=..., progress=...)
    baseline: bool
    framework: str

    def fit(self, data: SessionData, seed: int, *, config: Any = None, progress: Progress | None = None) -> Recommender:
        """Fit on `data` with `config` (the kind's defaults when None); refuses another kind's config."""
        config = self.config_type() if config is None else config
        if not isinstance(config, self.config_type):
            raise InvalidInputError(
                f"kind {self.name!r} takes a {self.config_type.__name__}, not a {type(config).__name__}",
                field="config",
            )
        return self.fit_with(data, config=config, seed=seed, progress=progress)


def _index_kind(fit: Callable[[SessionData, Any, int], Recommender]) -> Fit:
    """An index kind's fit(data, config, seed) as a Fit (nothing to report progress on)."""

    def fit_with(data: SessionData, *, config: Any, seed: int, progress: Progress | None = None) -> Recommender:
        del progress
        return fit(data, config, seed)

    return fit_with


KINDS: Final[dict[str, Kind]] = {
    GRU4REC: Kind(GRU4REC, NextItemConfig, fit_gru4rec, baseline=False, framework="pytorch"),
    "sasrec": Kind("sasrec", SASRecConfig, fit_sasrec, baseline=False, framework="pytorch"),
    "popularity": Kind("popularity", PopularityConfig, _index_kind(fit_popularity), True, INDEX_REGISTRY_FRAMEWORK),
    "markov": Kind("markov", MarkovConfig, _index_kind(fit_markov), True, INDEX_REGISTRY_FRAMEWORK),
    "covisitation": Kind(
        "covisitation", CovisitationConfig, _index_kind(fit_covisitation), True, INDEX_REGISTRY_FRAMEWORK
    ),
    "sknn": Kind("sknn", SknnConfig, _index_kind(fit_sknn), True, INDEX_REGISTRY_FRAMEWORK),
}
BASELINES: Final = tuple(name for name, kind in KINDS.items() if kind.baseline)


def kind_or_auto(name: str) -> str:
    """`name` when it is a kind or "auto"; anything else is refused listing both (field "kind")."""
    if name != AUTO and name not in KINDS:
        raise InvalidInputError(
            f"unknown next-item kind {name!r}; known: {', '.join(KINDS)}, or {AUTO} (the best on validation)",
            field="kind",
            value=name,
        )
    return name


def config_type_of(name: str) -> type:
    """The hyper-parameter config a --kind takes: auto takes GRU4Rec's (the other kinds keep their defaults)."""
    return KINDS[GRU4REC].config_type if kind_or_auto(name) == AUTO else KINDS[name].config_type


def kind_named(name: str) -> Kind:
    """The kind called `name`; an unknown name is refused listing the known ones (field "kind")."""
    if name not in KINDS:
        raise InvalidInputError(f"unknown next-item kind {name!r}; known: {', '.join(KINDS)}", field="kind", value=name)
    return KINDS[name]
