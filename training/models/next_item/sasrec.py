"""Next item, kind "sasrec": causal self-attention over the session's steps (SASRec, Kang & McAuley 2018).

Each step is its item's embedding (tied with the output side, neural.py) plus an event-type embedding; the shared
causal transformer (`training/attention.py`: distance-from-the-end positions, pre-norm blocks, a causal mask that
right padding makes sufficient) turns the steps into states, and the state at the last real step goes to the
repeat-aware head every neural kind shares (neural.py), whose repeat attention reads the per-step states too.

Fitted by `fit_sasrec` (neural_fit.py: sampled softmax, a budget in optimiser steps, early stopping on the
validation hit rate, optionally a hyper-parameter search) into a `Recommender` whose graph has the inputs and
outputs of every other kind; the attention is written out in plain ops, so the graph is the module's own ops and
parity holds far below 1e-4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import torch
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as typed
from torch import nn

from journey.errors import InvalidInputError
from journey.model_inputs import PAD
from training.attention import CausalTransformer
from training.models.next_item.base import SessionData
from training.models.next_item.neural import SessionNet
from training.models.next_item.neural_fit import NeuralConfig, NeuralRecommender, fit_neural, neural_space
from training.torch_loop import Progress

if TYPE_CHECKING:
    import optuna

KIND = "sasrec"


@typed(frozen=True, config=ConfigDict(extra="forbid"))
class SASRecConfig(NeuralConfig):
    """SASRec's own hyper-parameters beside the ones every neural kind has (NeuralConfig)."""

    heads: Annotated[int, Field(ge=1)] = 2  # must divide embedding_dim
    layers: Annotated[int, Field(ge=1, le=8)] = 2
    ffn_factor: Annotated[int, Field(ge=1, le=8)] = 2  # feed-forward width = ffn_factor * embedding_dim
    # the auxiliary "later in the session" loss (neural_fit.py): hit rate@20 +0.009 on the synthetic shop, +0.002
    # on the REES46 sample (MRR@20 +0.025 on the unit-test shop); the GRU gained nothing from it (0 there)
    later_loss: Annotated[float, Field(ge=0.0)] = 0.5

    def __post_init__(self) -> None:
        if self.embedding_dim % self.heads:
            raise InvalidInputError(
                f"heads ({self.heads}) must divide embedding_dim ({self.embedding_dim})",
                field="heads",
                value=self.heads,
            )


class SASRecEncoder(nn.Module):
    """Item embedding + event-type embedding per step -> the shared causal transformer -> states [n, T, dim]."""

    def __init__(self, config: SASRecConfig, type_vocab: int) -> None:
        super().__init__()
        self.types = nn.Embedding(type_vocab, config.embedding_dim, padding_idx=PAD)
        self.transformer = CausalTransformer.shaped(config.embedding_dim, config.seq_len, config)

    def forward(self, steps: torch.Tensor, event_types: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.transformer(steps + self.types(event_types), lengths)
        return result


def build_sasrec(config: SASRecConfig, n_items: int) -> SessionNet:
    spec = config.input_spec()
    return SessionNet(
        n_items,
        config.seq_len,
        spec.type_vocab_size,
        SASRecEncoder(config, spec.type_vocab_size),
        hidden=config.embedding_dim,
        dim=config.embedding_dim,
        repeat=config.repeat,
    )


def sasrec_space(trial: optuna.Trial) -> dict[str, Any]:
    """What a search varies: every neural kind's hyper-parameters, and the transformer's depth and heads."""
    return {
        **neural_space(trial),
        "layers": trial.suggest_int("layers", 1, 3),
        "heads": trial.suggest_categorical("heads", [1, 2, 4]),
    }


def fit_sasrec(
    data: SessionData, *, config: SASRecConfig | None = None, seed: int = 42, progress: Progress | None = None
) -> NeuralRecommender:
    """The "sasrec" kind fitted on `data` (train rows; valid rows for early stopping, selection and the search
    `config.search_trials` asks for, never test rows)."""
    return fit_neural(KIND, build_sasrec, sasrec_space, data, config or SASRecConfig(), seed=seed, progress=progress)
