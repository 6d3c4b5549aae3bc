"""Next item: a GRU4Rec-style session recommender whose ONNX graph takes the shop's item ids and answers in them.

The model reads next_item_v1 (the session's last items and event types) through `journey.model_inputs
.next_item_inputs`, the transform serving reuses. Items are embedded (the training split's most frequent
`max_items`, index 0 for padding and any other item), a GRU runs over the right-padded steps, and the state at the
last real step is projected into the item space: the score of item j is that query times j's embedding (tied with
the input embedding) plus a per-item bias, softmaxed over the whole vocabulary. A session the online store does not
know (no steps) gets the zero state, so its answer is the learnt bias: the popular items.

The exported graph is self-contained (DESIGN: "top-K inside the ONNX graph"):

    item_ids int64 [n, T] --LabelEncoder (ai.onnx.ml, vocabulary -> index, else 0)--> the torch graph
        --softmax, TopK(top_k)--> indices --Gather(vocabulary)--> recommended_item_ids int64 [n, top_k]
                                                                  scores float32 [n, top_k] (P(next item), best first)

so no vocabulary file travels beside the model, and a batch of requests is one matrix product against the item
embeddings (where adaptive batching pays: one [n, d] x [d, items] product instead of n vector products).

Judged on the test days by hit rate at 10 and 20 (the next item is among the top k) and MRR at 20, against two
baselines that need no learning (`baselines.py`): the training split's most popular next items, and item-to-item
co-visitation (the items that most often followed the session's last item in training, topped up with popular
ones). It is fitted by the shared torch loop (`training/torch_loop.py`); what is its own here is the vocabulary, the
network and the batch loss (a softmax over the batch's next items plus sampled negatives).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import torch
from torch import nn

from journey.contracts import NEXT_ITEM_V1
from journey.errors import InvalidInputError
from journey.model_inputs import PAD, NextItemInputSpec, next_item_inputs
from training.export import ExportReport, export_recommender
from training.labels import LABEL, label_ids
from training.models.baselines import next_item_baselines
from training.models.next_item.base import UNKNOWN_INDEX, Inputs, Vocabulary, pad_columns
from training.runs import Candidate, TrainingRun
from training.splits import TimeSplit, time_split
from training.torch_loop import History, LoopSettings, Progress, Tensors, batched, fit, torch_threads

log = logging.getLogger(__name__)

MODEL_NAME: Final = "next_item"
_MASKED: Final = -1e9  # the logit of index 0: never recommended, and finite so softmax stays NaN-free
_EVAL_BATCH = 4_096


@dataclass(frozen=True)
class NextItemConfig:
    """Hyper-parameters for ~140k training examples of a 17k-item vocabulary (the demo shop). Measured there (test
    days): full softmax, six epochs at batch 512: hit rate@20 0.453; full softmax, these four epochs: 0.452, MRR@20
    0.255, fit ~4 min on one core; 2048 sampled negatives (the default): 0.448, MRR@20 0.267, fit 80 s."""

    seq_len: int = 12
    top_k: int = 50  # items the graph returns per row: the most a request can ask for
    max_items: int = 50_000  # vocabulary: the most frequent items of the training split (inputs and labels)
    embedding_dim: int = 64
    type_dim: int = 8
    hidden: int = 96
    dropout: float = 0.1
    epochs: int = 4
    batch_size: int = 1024
    lr: float = 4e-3
    patience: int = 2
    sampled_negatives: int = 2048  # per training step, besides the batch's next items (0: full softmax)
    max_threads: int = 1  # as for next action: OpenMP workers spin when the other core is busy
    holdout_rows: int = 256
    min_split_rows: int = 20
    eval_k: int = 20  # the candidates' lists are cut here for the metrics (hit rate at 10 and 20, MRR at 20)

    def input_spec(self) -> NextItemInputSpec:
        return NextItemInputSpec(seq_len=self.seq_len, top_k=self.top_k)


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------


class NextItemNet(nn.Module):
    """Item and event-type embeddings -> GRU -> state at the last real step -> scores over the vocabulary."""

    def __init__(self, n_items: int, spec: NextItemInputSpec, config: NextItemConfig) -> None:
        super().__init__()
        self.hidden = config.hidden
        self.items = nn.Embedding(n_items + 1, config.embedding_dim, padding_idx=PAD)
        self.types = nn.Embedding(spec.type_vocab_size, config.type_dim, padding_idx=PAD)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.embedding_dim + config.type_dim, config.hidden, batch_first=True)
        self.query = nn.Linear(config.hidden, config.embedding_dim)
        self.bias = nn.Parameter(torch.zeros(n_items + 1))
        mask = torch.zeros(n_items + 1)
        mask[UNKNOWN_INDEX] = _MASKED
        self.mask: torch.Tensor
        self.register_buffer("mask", mask)

    def session_query(self, item_index: torch.Tensor, event_types: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[n, embedding_dim]: where the session points in item space (the zero state's projection when empty)."""
        steps = torch.cat([self.dropout(self.items(item_index)), self.types(event_types)], dim=2)
        outputs, _ = self.gru(steps)
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, self.hidden)
        session = outputs.gather(1, last).squeeze(1) * (lengths > 0).unsqueeze(1).to(outputs.dtype)
        query: torch.Tensor = self.query(session)
        return query

    def logits(self, item_index: torch.Tensor, event_types: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = (
            self.session_query(item_index, event_types, lengths) @ self.items.weight.T + self.bias + self.mask
        )
        return scores

    def sampled_logits(self, inputs: list[torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
        """Scores over `candidates` (vocabulary indices, sorted) only: the training step's softmax."""
        query = self.session_query(*inputs)
        scores: torch.Tensor = query @ self.items.weight[candidates].T + self.bias[candidates]
        return scores

    def forward(self, item_index: torch.Tensor, event_types: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(item_index, event_types, lengths), dim=1)


class TopItems(nn.Module):
    """What is exported: the `k` likeliest vocabulary indices and their probabilities, best first."""

    def __init__(self, net: NextItemNet, k: int) -> None:
        super().__init__()
        self.net = net
        self.k = k

    def forward(
        self, item_index: torch.Tensor, event_types: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores, indices = torch.topk(self.net(item_index, event_types, lengths), self.k, dim=1)
        return indices, scores


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


def _tensors(inputs: Inputs, vocabulary: Vocabulary) -> Tensors:
    """`forward`'s arguments: item ids mapped onto the vocabulary, as the graph's LabelEncoder does."""
    return [
        torch.from_numpy(vocabulary.index(inputs["item_ids"])),
        torch.from_numpy(np.ascontiguousarray(inputs["event_types"])),
        torch.from_numpy(np.ascontiguousarray(inputs["lengths"])),
    ]


def step_loss(net: NextItemNet, x: Tensors, y: torch.Tensor, negatives: int, rng: torch.Generator) -> torch.Tensor:
    """Cross-entropy of one batch: over the whole vocabulary, or over its next items plus sampled negatives."""
    if negatives <= 0:
        return nn.functional.cross_entropy(net.logits(*x), y)
    drawn = torch.randint(1, net.bias.numel(), (negatives,), generator=rng)
    candidates = torch.unique(torch.cat([y, drawn]))  # sorted: a label's position is its target
    return nn.functional.cross_entropy(net.sampled_logits(x, candidates), torch.searchsorted(candidates, y))


def _fit(
    net: NextItemNet,
    train: tuple[Tensors, torch.Tensor],
    valid: tuple[Tensors, torch.Tensor],
    config: NextItemConfig,
    seed: int,
    progress: Progress | None,
) -> History:
    """The shared loop with this model's loss; early stopping on the validation loss (full softmax).

    Each step's softmax runs over the batch's own next items plus `sampled_negatives` items drawn uniformly from the
    vocabulary (0: the whole vocabulary), from a generator of its own seeded with `seed + 1`. On the demo shop that
    made an epoch 5x faster (12 s vs 63 s on one core: the [batch, vocabulary] softmax was most of a step); see
    NextItemConfig for the hit rates.

    Training rows whose next item is outside the vocabulary (index 0) are left out: they carry no gradient, and a
    batch made only of them would make the mean loss 0/0 (NaN in the training curve).
    """
    (x, y) = train
    known = y != UNKNOWN_INDEX
    x, y = [t[known] for t in x], y[known]
    negative_rng = torch.Generator().manual_seed(seed + 1)

    def batch_loss(x: Tensors, y: torch.Tensor) -> torch.Tensor:
        return step_loss(net, x, y, config.sampled_negatives, negative_rng)

    def eval_loss(x: Tensors, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        loss = nn.functional.cross_entropy(net.logits(*x), y, ignore_index=UNKNOWN_INDEX, reduction="sum")
        return loss, float(int((y != UNKNOWN_INDEX).sum()))

    loop = LoopSettings(
        name="next-item",
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        patience=config.patience,
        eval_batch=_EVAL_BATCH,
    )
    return fit(net, (x, y), valid, loop, seed=seed, batch_loss=batch_loss, eval_loss=eval_loss, progress=progress)


def recommend(net: NextItemNet, vocabulary: Vocabulary, inputs: Inputs, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Item ids [n, k] and their probabilities from the native module (what the ONNX graph must reproduce)."""
    table = vocabulary.table()

    def top(batch: Tensors) -> tuple[np.ndarray, np.ndarray]:
        scores, index = torch.topk(net(*batch), k, dim=1)
        return table[index.numpy()], scores.numpy()

    parts = batched(net, _tensors(inputs, vocabulary), _EVAL_BATCH, top)
    if not parts:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate([ids for ids, _ in parts]), np.concatenate([scores for _, scores in parts])


def train_next_item(
    frame: pd.DataFrame,
    onnx_path: Path,
    *,
    config: NextItemConfig | None = None,
    seed: int = 42,
    progress: Progress | None = None,
) -> TrainingRun:
    """Train on the earlier days of a next_item_v1 training set, score model and baselines on the last ones,
    export to `onnx_path` (vocabulary and top-k in the graph, parity-checked).

    Raises InvalidInputError for a frame without integer labels (field "label"), too few rows (field "rows") or a
    training split whose labels are all one item (nothing to rank, field "label").
    """
    config = config or NextItemConfig()
    spec = config.input_spec()
    split, labels = _split(frame, config)
    started = time.perf_counter()
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    inputs = {name: next_item_inputs(part, spec) for name, part in parts.items()}
    vocabulary = Vocabulary.build(inputs["train"], labels["train"], config.max_items)
    k = min(spec.top_k, len(vocabulary))
    seconds = {"inputs": time.perf_counter() - started}
    fitted = _fit_and_export(inputs, labels, vocabulary, k, config, seed, onnx_path, progress, seconds)
    history, model_ids, report = fitted

    candidates = (
        Candidate("gru4rec", pad_columns(model_ids, config.eval_k), is_model=True),
        *next_item_baselines(inputs, labels, config.eval_k),
    )
    extra = {"rows": split.summary.rows, "items": len(vocabulary), "best_epoch": history.best_epoch}
    log.info("next-item model trained", extra={**extra, "path": str(onnx_path)})
    return TrainingRun(
        model_name=MODEL_NAME,
        framework="pytorch",
        feature_service=NEXT_ITEM_V1,
        export=report,
        feature_order=spec.source_features,
        classes=(),
        labels=labels["test"],
        candidates=candidates,
        split=split.summary,
        params=_params(config, spec, seed, k, len(vocabulary), history),
        history={"train_loss": history.train_loss, "valid_loss": history.valid_loss},
        seconds=seconds,
    )


def _fit_and_export(
    inputs: dict[str, Inputs],
    labels: dict[str, np.ndarray],
    vocabulary: Vocabulary,
    k: int,
    config: NextItemConfig,
    seed: int,
    onnx_path: Path,
    progress: Progress | None,
    seconds: dict[str, float],
) -> tuple[History, np.ndarray, ExportReport]:
    """Seed, build, fit, recommend for the test days and export, with torch's threads set for the run (adds the
    timings); returns the model's test lists of `min(eval_k, k)` item ids."""
    with torch_threads(config.max_threads):
        torch.manual_seed(seed)
        net = NextItemNet(len(vocabulary), config.input_spec(), config)
        started = time.perf_counter()
        target = {name: torch.from_numpy(vocabulary.index(labels[name])) for name in ("train", "valid")}
        history = _fit(
            net,
            (_tensors(inputs["train"], vocabulary), target["train"]),
            (_tensors(inputs["valid"], vocabulary), target["valid"]),
            config,
            seed,
            progress,
        )
        seconds["fit"] = time.perf_counter() - started
        model_ids, _ = recommend(net, vocabulary, inputs["test"], min(config.eval_k, k))
        started = time.perf_counter()
        report = _export(net, vocabulary, inputs["test"], config, k, onnx_path)
        seconds["export"] = time.perf_counter() - started
    return history, model_ids, report


def _split(frame: pd.DataFrame, config: NextItemConfig) -> tuple[TimeSplit, dict[str, np.ndarray]]:
    """The time split and its item-id labels; refuses bad labels (before any work) and a single training item."""
    label_ids(frame)
    split = time_split(frame, min_rows=config.min_split_rows)
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    labels = {name: label_ids(part) for name, part in parts.items()}
    if len(np.unique(labels["train"])) < 2:
        raise InvalidInputError(
            f"every training example's next item is {labels['train'][0]}: nothing to rank",
            field=LABEL,
            value=int(labels["train"][0]),
        )
    return split, labels


def _export(
    net: NextItemNet, vocabulary: Vocabulary, test: Inputs, config: NextItemConfig, k: int, onnx_path: Path
) -> ExportReport:
    """The self-contained graph (vocabulary and top-k in it), parity-checked on the first `holdout_rows` test rows."""
    holdout = {name: values[: config.holdout_rows] for name, values in test.items()}
    return export_recommender(
        TopItems(net, k),
        vocabulary.ids,
        holdout,
        onnx_path,
        native=lambda feeds: list(recommend(net, vocabulary, feeds, k)),
    )


def _params(
    config: NextItemConfig, spec: NextItemInputSpec, seed: int, k: int, items: int, history: History
) -> dict[str, Any]:
    """What the registry keeps: enough to retrain the same model and to rebuild its inputs online (input_spec)."""
    return {
        "seed": seed,
        "config": asdict(config),
        "input_spec": {**spec.to_dict(), "top_k": k},
        "vocabulary_size": items,
        "best_epoch": history.best_epoch,
        "epochs_run": history.epochs_run,
    }
