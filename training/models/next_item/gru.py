"""Next item, kind "gru4rec": a GRU over the session's steps (GRU4Rec, Hidasi et al. 2016) with the repeat-aware
head every neural kind shares (neural.py), as a session recommender whose ONNX graph takes and answers item ids.

The model reads next_item_v1 (the session's last items and event types) through `journey.model_inputs
.next_item_inputs`, the transform serving reuses. Items are embedded (the training split's most frequent
`max_items`, index 0 for padding and any other item), each step is its item's embedding (dropout) joined with an
event-type embedding, and a GRU runs over the right-padded steps: its output at each step is that step's state
(later padding cannot reach back). The head scores the vocabulary from the state at the last real step (tied item
embeddings plus a per-item bias) and mixes in the session's own items by attention over the per-step states; a
session the online store does not know (no steps) gets the zero state and no repeat term, so its answer is the
learnt bias: the popular items.

The exported graph is self-contained (DESIGN: "top-K inside the ONNX graph"; export/session_graph.py):

    item_ids int64 [n, T] --LabelEncoder (vocabulary -> index, else 0)--> the torch graph (GRU, head, TopK over the
        vocabulary and the session's steps, index -> id) --> recommended_item_ids int64 [n, top_k]
                                                             scores float32 [n, top_k] (P(next item), best first)

so no vocabulary file travels beside the model, and a batch of requests is one matrix product against the item
embeddings (where adaptive batching pays). `fit_gru4rec` fits it (neural_fit.py: a budget in optimiser steps,
early stopping on the validation hit rate at 20, sampled softmax, an optional hyper-parameter search) into the
kind's `Recommender`; `trainer.py` judges it beside the index kinds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final

import torch
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as typed
from torch import nn

from journey.model_inputs import PAD
from training.models.next_item.base import SessionData
from training.models.next_item.neural import SessionNet
from training.models.next_item.neural_fit import NeuralConfig, NeuralRecommender, fit_neural, neural_space
from training.torch_loop import Progress

if TYPE_CHECKING:
    import optuna

KIND: Final = "gru4rec"


@typed(frozen=True, config=ConfigDict(extra="forbid"))
class NextItemConfig(NeuralConfig):
    """The GRU's own hyper-parameters beside the ones every neural kind has (NeuralConfig); also the settings of a
    next-item run (seq_len, top_k, holdout_rows, min_split_rows, eval_k: trainer.py)."""

    type_dim: Annotated[int, Field(ge=1)] = 8
    hidden: Annotated[int, Field(ge=1)] = 96


class GRUEncoder(nn.Module):
    """[item embedding (dropout); event-type embedding] per step -> GRU -> its output at every step."""

    def __init__(self, config: NextItemConfig, type_vocab: int) -> None:
        super().__init__()
        self.types = nn.Embedding(type_vocab, config.type_dim, padding_idx=PAD)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.embedding_dim + config.type_dim, config.hidden, batch_first=True)

    def forward(self, steps: torch.Tensor, event_types: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        del lengths  # right padding: a step's output never depends on the padding after it
        outputs, _ = self.gru(torch.cat([self.dropout(steps), self.types(event_types)], dim=2))
        result: torch.Tensor = outputs
        return result


def build_gru4rec(config: NextItemConfig, n_items: int) -> SessionNet:
    spec = config.input_spec()
    return SessionNet(
        n_items,
        config.seq_len,
        spec.type_vocab_size,
        GRUEncoder(config, spec.type_vocab_size),
        hidden=config.hidden,
        dim=config.embedding_dim,
        repeat=config.repeat,
    )


def gru4rec_space(trial: optuna.Trial) -> dict[str, Any]:
    """What a search varies: every neural kind's hyper-parameters, and the GRU's width."""
    return {**neural_space(trial), "hidden": trial.suggest_categorical("hidden", [64, 96, 128, 192])}


def fit_gru4rec(
    data: SessionData, config: NextItemConfig | None = None, seed: int = 42, progress: Progress | None = None
) -> NeuralRecommender:
    """The "gru4rec" kind fitted on `data` (train rows; valid rows for early stopping, selection and the search
    `config.search_trials` asks for, never test rows)."""
    config = config or NextItemConfig()
    return fit_neural(KIND, build_gru4rec, gru4rec_space, data, config, seed=seed, progress=progress)
