"""Next action / intent: a GRU over the session's last events plus the user's behaviour -> next event type or exit.

The model reads next_action_v1 through `journey.model_inputs.next_action_inputs` (the transform serving reuses):
each step is an event-type, item-bucket and category-bucket embedding plus its time gap and repeat flags; a GRU
runs over the right-padded steps and the state at the last real step is gathered (no packed sequences: they do
not export to ONNX), then joined with an MLP over the dense user/session features. Imputation and scaling of the
dense features live inside the module (statistics of the training split as buffers), so the ONNX graph takes raw
values with NaN for missing, and its output is `probabilities` [batch, len(NEXT_ACTION_LABELS)] (softmax in-graph).

It is judged on the test days against two baselines that need no learning: repeating the last action, and a
first-order Markov chain P(next | last event type) from the training split. The loss is unweighted by default:
class weights buy recall on the rare classes with accuracy (`class_weighting="sqrt_inverse"` cost 0.8 points of
accuracy for +5.7 points of macro-F1 on the synthetic shop below).

What the synthetic shop allows (2M events, default config): after a view the likeliest next step depends on what
kind of view it was, which the last event type alone does not say: a first look mostly browses on, a repeat look
mostly ends the session or carts the item, a look after a purchase mostly ends it. The step features
(`item_seen_before`, `same_item_as_previous`) and `session_purchases` show which, so the model reaches accuracy
0.772 vs Markov 0.736 on the test days (log loss 0.635 vs 0.762); an oracle that knows the hidden stage, segment and
cart gets ~0.774 on the whole dataset.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from journey.contracts import NEXT_ACTION_V1
from journey.errors import InvalidInputError
from journey.events import EVENT_TYPES
from journey.model_inputs import PAD, STEP_FEATURES, NextActionInputSpec, next_action_inputs
from journey.onnx_contract import NEXT_ACTION_INPUT_NAMES, NEXT_ACTION_OUTPUT_NAME
from training.datasets import LABEL, NEXT_ACTION_LABELS
from training.export import export_torch
from training.runs import Candidate, TrainingRun
from training.splits import time_split

log = logging.getLogger(__name__)

MODEL_NAME: Final = "next_action"
LAST_ACTION_REPEAT: Final = "last_action_repeat"
MARKOV_FIRST_ORDER: Final = "markov_first_order"
_EVAL_BATCH = 8_192
Inputs = dict[str, np.ndarray]
Progress = Callable[[str, float], None]

if NEXT_ACTION_LABELS[: len(EVENT_TYPES)] != EVENT_TYPES:  # the baselines map a last event type onto its class
    raise ImportError("NEXT_ACTION_LABELS must start with EVENT_TYPES in order")


@dataclass(frozen=True)
class NextActionConfig:
    """Hyper-parameters; the defaults fit ~140k training examples in under a minute on two cores (~6 s an epoch).

    The seed is not here but an argument of `train_next_action`: one run, one seed, recorded in its params.
    """

    seq_len: int = 12  # of the LAST_N_EVENTS stored: the last 12 did as well as all 20 here, 40% faster
    item_buckets: int = 1 << 14
    category_buckets: int = 1 << 10
    type_dim: int = 8
    item_dim: int = 8
    category_dim: int = 8
    hidden: int = 48
    dense_hidden: int = 64
    dropout: float = 0.1
    epochs: int = 8
    batch_size: int = 1024
    lr: float = 5e-3  # the peak of the one-cycle schedule ("constant": throughout)
    lr_schedule: Literal["one_cycle", "constant"] = "one_cycle"
    weight_decay: float = 1e-4
    patience: int = 2  # epochs without a lower validation loss before stopping (the best epoch is kept)
    class_weighting: Literal["none", "sqrt_inverse"] = "none"
    # 1 thread: 2 were ~1.4x faster on an idle two-core box, but 5-20x slower whenever another process wanted a core
    # (OpenMP workers spin while they wait for each other); the model is small enough for one
    max_threads: int = 1
    holdout_rows: int = 256  # test rows the ONNX parity check runs on
    min_split_rows: int = 20  # fewer rows in train, valid or test is an error

    def input_spec(self) -> NextActionInputSpec:
        return NextActionInputSpec(
            seq_len=self.seq_len, item_buckets=self.item_buckets, category_buckets=self.category_buckets
        )


# ---------------------------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------------------------


def last_event_codes(inputs: Inputs) -> np.ndarray:
    """The event-type code (model_inputs vocabulary) of each row's newest event; PAD when it has none."""
    lengths = inputs["lengths"]
    last = np.take_along_axis(inputs["event_types"], np.maximum(lengths - 1, 0)[:, None], axis=1)[:, 0]
    return np.where(lengths > 0, last, PAD)


def last_action_repeat(last_codes: np.ndarray, fallback: int) -> np.ndarray:
    """Probability 1 on the class of the last event's type; `fallback` (a class) for no or an unknown event."""
    classes = np.where((last_codes >= 1) & (last_codes <= len(EVENT_TYPES)), last_codes - 1, fallback)
    scores = np.zeros((len(last_codes), len(NEXT_ACTION_LABELS)))
    scores[np.arange(len(last_codes)), classes] = 1.0
    return scores


def markov_transitions(last_codes: np.ndarray, labels: np.ndarray, states: int) -> np.ndarray:
    """P(next class | last event-type code) with add-one smoothing: [states, classes], rows sum to 1."""
    counts = np.ones((states, len(NEXT_ACTION_LABELS)))
    np.add.at(counts, (last_codes, labels), 1.0)
    result: np.ndarray = counts / counts.sum(axis=1, keepdims=True)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------


def squash(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log1p(|x|): counts and seconds span orders of magnitude; rates and scores barely move."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def dense_statistics(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each squashed dense feature over its observed values (0 and 1 for an all-missing one)."""
    squashed = squash(torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))).numpy().astype(np.float64)
    count = np.maximum((~np.isnan(squashed)).sum(axis=0), 1)
    mean = np.nansum(squashed, axis=0) / count
    var = np.nansum((squashed - mean) ** 2, axis=0) / count
    return mean, np.where(var > 1e-12, np.sqrt(var), 1.0)


class NextActionNet(nn.Module):
    """Embedded steps -> GRU -> state at the last real step, joined with an MLP over the dense features."""

    def __init__(
        self, spec: NextActionInputSpec, config: NextActionConfig, dense_mean: np.ndarray, dense_std: np.ndarray
    ) -> None:
        super().__init__()
        self.hidden = config.hidden
        self.types = nn.Embedding(spec.type_vocab_size, config.type_dim, padding_idx=PAD)
        self.items = nn.Embedding(spec.item_buckets + 1, config.item_dim, padding_idx=PAD)
        self.categories = nn.Embedding(spec.category_buckets + 1, config.category_dim, padding_idx=PAD)
        step_width = config.type_dim + config.item_dim + config.category_dim + len(STEP_FEATURES)
        self.gru = nn.GRU(step_width, config.hidden, batch_first=True)
        self.dense_mean: torch.Tensor
        self.dense_std: torch.Tensor
        self.register_buffer("dense_mean", torch.tensor(dense_mean, dtype=torch.float32))
        self.register_buffer("dense_std", torch.tensor(dense_std, dtype=torch.float32))
        self.dense = nn.Sequential(nn.Linear(2 * len(spec.dense_features), config.dense_hidden), nn.ReLU())
        self.head = nn.Sequential(
            nn.Linear(config.hidden + config.dense_hidden, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, len(NEXT_ACTION_LABELS)),
        )

    def logits(
        self,
        event_types: torch.Tensor,
        item_buckets: torch.Tensor,
        category_buckets: torch.Tensor,
        step_features: torch.Tensor,
        lengths: torch.Tensor,
        dense: torch.Tensor,
    ) -> torch.Tensor:
        steps = torch.cat(
            [self.types(event_types), self.items(item_buckets), self.categories(category_buckets), step_features],
            dim=2,
        )
        outputs, _ = self.gru(steps)
        # right padding: the output at the last real step is final (later pads cannot reach back); an empty session
        # (unknown to the online store) gets the zero vector
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, self.hidden)
        session = outputs.gather(1, last).squeeze(1) * (lengths > 0).unsqueeze(1).to(outputs.dtype)
        # NaN = missing: imputed with the training mean (0 after scaling) and flagged, inside the graph
        missing = torch.isnan(dense)
        scaled = (squash(torch.where(missing, torch.zeros_like(dense), dense)) - self.dense_mean) / self.dense_std
        scaled = torch.where(missing, torch.zeros_like(scaled), scaled)
        user = self.dense(torch.cat([scaled, missing.to(scaled.dtype)], dim=1))
        result: torch.Tensor = self.head(torch.cat([session, user], dim=1))
        return result

    def forward(
        self,
        event_types: torch.Tensor,
        item_buckets: torch.Tensor,
        category_buckets: torch.Tensor,
        step_features: torch.Tensor,
        lengths: torch.Tensor,
        dense: torch.Tensor,
    ) -> torch.Tensor:
        """Class probabilities in NEXT_ACTION_LABELS order (what the ONNX graph outputs)."""
        logits = self.logits(event_types, item_buckets, category_buckets, step_features, lengths, dense)
        return torch.softmax(logits, dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


def label_indices(frame: pd.DataFrame) -> np.ndarray:
    """`label` strings -> indices into NEXT_ACTION_LABELS; a missing column or an unknown label names it."""
    if LABEL not in frame.columns:
        raise InvalidInputError(f"the training frame has no {LABEL!r} column", field=LABEL)
    codes = np.asarray(pd.Categorical(frame[LABEL], categories=NEXT_ACTION_LABELS).codes, dtype=np.int64)
    if (codes < 0).any():
        bad = frame[LABEL].to_numpy()[np.flatnonzero(codes < 0)[0]]
        raise InvalidInputError(
            f"unknown next-action label {bad!r}; expected one of {list(NEXT_ACTION_LABELS)}", field=LABEL, value=bad
        )
    return codes


def class_weights(labels: np.ndarray, how: str) -> np.ndarray:
    """Per-class loss weights: all 1, or 1/sqrt(frequency) scaled to a weighted mean of 1 over the examples."""
    if how == "none":
        return np.ones(len(NEXT_ACTION_LABELS))
    if how != "sqrt_inverse":
        raise InvalidInputError(f"unknown class_weighting {how!r}", field="class_weighting", value=how)
    counts = np.bincount(labels, minlength=len(NEXT_ACTION_LABELS)).astype(np.float64)
    weights = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    result: np.ndarray = weights * counts.sum() / (weights * counts).sum()
    return result


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count is process-wide: set it for the run and put the caller's back afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _tensors(inputs: Inputs) -> list[torch.Tensor]:
    """The inputs as tensors in `forward`'s parameter order."""
    return [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in NEXT_ACTION_INPUT_NAMES]


def _mean_loss(module: NextActionNet, tensors: list[torch.Tensor], labels: torch.Tensor, weight: torch.Tensor) -> float:
    """Weighted cross-entropy over a whole split, in eval mode (the quantity early stopping watches)."""
    module.eval()
    total, norm = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(labels), _EVAL_BATCH):
            batch = [t[start : start + _EVAL_BATCH] for t in tensors]
            y = labels[start : start + _EVAL_BATCH]
            loss = torch.nn.functional.cross_entropy(module.logits(*batch), y, weight=weight, reduction="sum")
            total += float(loss)
            norm += float(weight[y].sum())
    return total / max(norm, 1e-12)


def predict_probabilities(module: NextActionNet, inputs: Inputs) -> np.ndarray:
    """Class probabilities [rows, classes] from the native module, batched (what ONNX must reproduce)."""
    module.eval()
    tensors = _tensors(inputs)
    parts = []
    with torch.no_grad():
        for start in range(0, len(inputs["lengths"]), _EVAL_BATCH):
            parts.append(module(*(t[start : start + _EVAL_BATCH] for t in tensors)).numpy())
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, len(NEXT_ACTION_LABELS)))


@dataclass
class _History:
    train_loss: list[float]
    valid_loss: list[float]
    best_epoch: int


def _fit(
    module: NextActionNet,
    train: tuple[Inputs, np.ndarray],
    valid: tuple[Inputs, np.ndarray],
    config: NextActionConfig,
    seed: int,
    progress: Progress | None,
) -> _History:
    """Adam on shuffled mini-batches; stop after `patience` epochs without a better validation loss, keep the best."""
    x_train, y_train = _tensors(train[0]), torch.from_numpy(train[1])
    x_valid, y_valid = _tensors(valid[0]), torch.from_numpy(valid[1])
    weight = torch.tensor(class_weights(train[1], config.class_weighting), dtype=torch.float32)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = _schedule(optimizer, config, steps=config.epochs * math.ceil(len(train[1]) / config.batch_size))
    order_rng = torch.Generator().manual_seed(seed)
    history = _History([], [], 0)
    best_loss, best_state = float("inf"), copy.deepcopy(module.state_dict())
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(y_train), generator=order_rng)
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        history.train_loss.append(_train_epoch(module, (x_train, y_train, weight), batches, optimizer, schedule))
        history.valid_loss.append(_mean_loss(module, x_valid, y_valid, weight))
        if history.valid_loss[-1] < best_loss:
            best_loss, history.best_epoch = history.valid_loss[-1], epoch
            best_state = copy.deepcopy(module.state_dict())
        _report_epoch(history, epoch, config.epochs, progress)
        if epoch - history.best_epoch >= config.patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    return history


def _train_epoch(
    module: NextActionNet,
    data: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor],
    batches: list[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    schedule: LRScheduler,
) -> float:
    """One pass over the batches; returns the mean training loss."""
    x, y, weight = data
    module.train()
    total = 0.0
    for batch in batches:
        loss = torch.nn.functional.cross_entropy(module.logits(*(t[batch] for t in x)), y[batch], weight=weight)
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        total += loss.detach().item() * len(batch)
    return total / max(sum(len(b) for b in batches), 1)


def _report_epoch(history: _History, epoch: int, epochs: int, progress: Progress | None) -> None:
    train, valid, best = history.train_loss[-1], history.valid_loss[-1], history.best_epoch
    log.info("next-action epoch", extra={"epoch": epoch, "train_loss": train, "valid_loss": valid, "best_epoch": best})
    if progress is not None:
        progress(
            f"epoch {epoch}/{epochs}: train loss {train:.4f}, valid loss {valid:.4f} (best: epoch {best})",
            epoch / epochs,
        )


def _schedule(optimizer: torch.optim.Optimizer, config: NextActionConfig, steps: int) -> LRScheduler:
    """One cycle (warm up over the first 15% of the steps, then anneal): a fixed epoch budget ends converged."""
    if config.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if config.lr_schedule != "one_cycle":
        raise InvalidInputError(f"unknown lr_schedule {config.lr_schedule!r}", field="lr_schedule")
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(steps, 1), pct_start=0.15)


def train_next_action(
    frame: pd.DataFrame,
    onnx_path: Path,
    *,
    config: NextActionConfig | None = None,
    seed: int = 42,
    progress: Progress | None = None,
) -> TrainingRun:
    """Train on the earlier days of a next_action_v1 training set, score model and baselines on the last ones,
    export to `onnx_path` (parity-checked).

    `frame` is `training.datasets.build_training_set(..., NEXT_ACTION_V1, ...)`'s frame. The same frame, config and
    seed give the same weights and graph, and the same file sha256 from a fresh process (torch.export notes in the
    file's graph metadata which symbolic shapes the process created before, so a second export in one process
    differs there and only there). Raises InvalidInputError for a frame without labels, with an
    unknown label or a single class in the training days (field "label"), or too few rows (field "rows").
    """
    config = config or NextActionConfig()
    spec = config.input_spec()
    label_indices(frame)  # a bad label fails before any work
    split = time_split(frame, min_rows=config.min_split_rows)
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    labels = {name: label_indices(part) for name, part in parts.items()}
    present = np.unique(labels["train"])
    if len(present) < 2:
        raise InvalidInputError(
            f"every training example has label {NEXT_ACTION_LABELS[present[0]]!r}: nothing to learn",
            field=LABEL,
            value=NEXT_ACTION_LABELS[present[0]],
        )

    started = time.perf_counter()
    inputs = {name: next_action_inputs(part, spec) for name, part in parts.items()}
    seconds = {"inputs": time.perf_counter() - started}
    with _torch_threads(config.max_threads):
        torch.manual_seed(seed)
        module = NextActionNet(spec, config, *dense_statistics(inputs["train"]["dense"]))
        started = time.perf_counter()
        history = _fit(
            module, (inputs["train"], labels["train"]), (inputs["valid"], labels["valid"]), config, seed, progress
        )
        seconds["fit"] = time.perf_counter() - started
        scores = predict_probabilities(module, inputs["test"])
        started = time.perf_counter()
        holdout = {name: values[: config.holdout_rows] for name, values in inputs["test"].items()}
        example = {name: torch.from_numpy(np.ascontiguousarray(values[:8])) for name, values in holdout.items()}
        report = export_torch(module, example, holdout, onnx_path, output_names=[NEXT_ACTION_OUTPUT_NAME])
        seconds["export"] = time.perf_counter() - started

    candidates = (Candidate("gru", scores, is_model=True), *_baselines(inputs, labels["train"], spec))
    log.info(
        "next-action model trained",
        extra={
            "rows": split.summary.rows,
            "best_epoch": history.best_epoch,
            "seconds": seconds,
            "path": str(onnx_path),
        },
    )
    return TrainingRun(
        model_name=MODEL_NAME,
        framework="pytorch",
        feature_service=NEXT_ACTION_V1,
        export=report,
        feature_order=spec.source_features,
        classes=NEXT_ACTION_LABELS,
        labels=labels["test"],
        candidates=candidates,
        split=split.summary,
        params=_params(config, spec, seed, history, labels["train"]),
        history={"train_loss": history.train_loss, "valid_loss": history.valid_loss},
        seconds=seconds,
    )


def _baselines(inputs: dict[str, Inputs], train_labels: np.ndarray, spec: NextActionInputSpec) -> list[Candidate]:
    train_last, test_last = last_event_codes(inputs["train"]), last_event_codes(inputs["test"])
    majority = int(np.bincount(train_labels, minlength=len(NEXT_ACTION_LABELS)).argmax())
    markov = markov_transitions(train_last, train_labels, spec.type_vocab_size)
    return [
        Candidate(LAST_ACTION_REPEAT, last_action_repeat(test_last, majority)),
        Candidate(MARKOV_FIRST_ORDER, markov[test_last]),
    ]


def _params(
    config: NextActionConfig, spec: NextActionInputSpec, seed: int, history: _History, train_labels: np.ndarray
) -> dict[str, Any]:
    """What the registry keeps: enough to retrain the same model and to rebuild its inputs online (input_spec)."""
    return {
        "seed": seed,
        "config": asdict(config),
        "input_spec": spec.to_dict(),
        "class_weights": class_weights(train_labels, config.class_weighting).round(6).tolist(),
        "best_epoch": history.best_epoch,
        "epochs_run": len(history.valid_loss),
    }
