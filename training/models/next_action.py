"""Next action / intent: a GRU or a Transformer over the session's last events plus the user's behaviour -> next
event type or exit.

The model reads next_action_v1 through `journey.model_inputs.next_action_inputs` (the transform serving reuses):
each step is an event-type, item-bucket and category-bucket embedding plus its time gap and repeat flags; a GRU
(`arch="gru"`, the default) or the shared causal transformer (`arch="transformer"`, training/attention.py: the
steps projected to `hidden`, distance-from-the-end positions, causal self-attention) runs over the right-padded
steps and the state at the last real step is gathered (no packed sequences: they do not export to ONNX), then
joined with an MLP over the dense user/session features. Both export to the same graph contract (inputs
NEXT_ACTION_INPUT_NAMES, output `probabilities`) and are judged against the same baselines; the run's model
candidate is named after the encoder. Imputation and scaling of the
dense features live inside the module (statistics of the training split as buffers), so the ONNX graph takes raw
values with NaN for missing, and its output is `probabilities` [batch, len(NEXT_ACTION_LABELS)] (softmax in-graph).

It is judged on the test days against two baselines that need no learning (`baselines.py`): repeating the last
action, and a first-order Markov chain P(next | last event type) from the training split. It is fitted by the shared
torch loop (`training/torch_loop.py`); what is its own here is the network, its inputs and the batch loss. The loss
is unweighted by default: class weights buy recall on the rare classes with accuracy (`class_weighting=
"sqrt_inverse"` cost 0.8 points of accuracy for +5.7 points of macro-F1 on the synthetic shop below).

What the synthetic shop allows (2M events, default config): after a view the likeliest next step depends on what
kind of view it was, which the last event type alone does not say: a first look mostly browses on, a repeat look
mostly ends the session or carts the item, a look after a purchase mostly ends it. The step features
(`item_seen_before`, `same_item_as_previous`) and `session_purchases` show which, so the model reaches accuracy
0.772 vs Markov 0.736 on the test days (log loss 0.635 vs 0.762); an oracle that knows the hidden stage, segment and
cart gets ~0.774 on the whole dataset.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as typed
from torch import nn

from journey.contracts import NEXT_ACTION_V1
from journey.errors import InvalidInputError
from journey.model_inputs import PAD, STEP_FEATURES, NextActionInputSpec, next_action_inputs
from journey.onnx_contract import NEXT_ACTION_INPUT_NAMES, NEXT_ACTION_OUTPUT_NAME
from training.attention import CausalTransformer, last_step
from training.export import ExportReport, export_torch
from training.labels import LABEL, NEXT_ACTION_LABELS, label_indices
from training.models.baselines import next_action_baselines
from training.runs import Candidate, TrainingRun, session_groups, with_validation
from training.splits import TimeSplit, time_split
from training.torch_loop import History, LoopSettings, Progress, Tensors, batched, fit, torch_threads

log = logging.getLogger(__name__)

MODEL_NAME: Final = "next_action"
_EVAL_BATCH = 8_192
Inputs = dict[str, np.ndarray]


Positive = Annotated[int, Field(ge=1)]


@typed(frozen=True, config=ConfigDict(extra="forbid"))
class NextActionConfig:
    """Hyper-parameters; the defaults fit ~140k training examples in under a minute on two cores (~6 s an epoch).

    The seed is not here but an argument of `train_next_action`: one run, one seed, recorded in its params. A
    config file (`configs/next_action.yaml`, `training/configs.py`) sets any of them; unknown keys are refused.
    """

    arch: Literal["gru", "transformer"] = "gru"  # the sequence encoder (the candidate's name in the run)

    seq_len: int = 12  # of the LAST_N_EVENTS stored: the last 12 did as well as all 20 here, 40% faster
    item_buckets: int = 1 << 14
    category_buckets: int = 1 << 10
    type_dim: int = 8
    item_dim: int = 8
    category_dim: int = 8
    hidden: int = 48  # the GRU's state; the transformer's width (a multiple of `heads`)
    heads: Positive = 2  # transformer only
    layers: Annotated[int, Field(ge=1, le=8)] = 2  # transformer only
    ffn_factor: Annotated[int, Field(ge=1, le=8)] = 2  # transformer only: feed-forward width = ffn_factor * hidden
    dense_hidden: int = 64
    dropout: float = 0.1
    epochs: int = 8
    max_steps: Positive | None = None  # a budget in optimiser steps instead of `epochs` passes over the rows
    eval_every: Positive | None = None  # steps between evaluations (None: one per epoch)
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

    def __post_init__(self) -> None:
        if self.arch == "transformer" and self.hidden % self.heads:
            raise InvalidInputError(
                f"heads ({self.heads}) must divide hidden ({self.hidden}), the transformer's width",
                field="heads",
                value=self.heads,
            )

    def input_spec(self) -> NextActionInputSpec:
        return NextActionInputSpec(
            seq_len=self.seq_len, item_buckets=self.item_buckets, category_buckets=self.category_buckets
        )


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
        self.arch = config.arch
        if config.arch == "gru":
            self.gru = nn.GRU(step_width, config.hidden, batch_first=True)
        else:
            self.project = nn.Linear(step_width, config.hidden)
            self.transformer = CausalTransformer.shaped(config.hidden, spec.seq_len, config)
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
        # right padding: the output at the last real step is final (later pads cannot reach back, and the causal
        # mask keeps them out of the transformer's real steps); an empty session (unknown to the online store) gets
        # the zero vector
        outputs = self.gru(steps)[0] if self.arch == "gru" else self.transformer(self.project(steps), lengths)
        session = last_step(outputs, lengths)
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


def _tensors(inputs: Inputs) -> Tensors:
    """The inputs as tensors in `forward`'s parameter order."""
    return [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in NEXT_ACTION_INPUT_NAMES]


def predict_probabilities(module: NextActionNet, inputs: Inputs) -> np.ndarray:
    """Class probabilities [rows, classes] from the native module, batched (what ONNX must reproduce)."""
    parts = batched(module, _tensors(inputs), _EVAL_BATCH, lambda batch: module(*batch).numpy())
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, len(NEXT_ACTION_LABELS)))


def _fit(
    module: NextActionNet,
    train: tuple[Inputs, np.ndarray],
    valid: tuple[Inputs, np.ndarray],
    config: NextActionConfig,
    seed: int,
    progress: Progress | None,
) -> History:
    """The shared loop with this model's loss: cross-entropy weighted per class (`class_weighting`)."""
    weight = torch.tensor(class_weights(train[1], config.class_weighting), dtype=torch.float32)

    def batch_loss(x: Tensors, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(module.logits(*x), y, weight=weight)

    def eval_loss(x: Tensors, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        loss = nn.functional.cross_entropy(module.logits(*x), y, weight=weight, reduction="sum")
        return loss, float(weight[y].sum())

    loop = LoopSettings(
        name="next-action",
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        patience=config.patience,
        eval_batch=_EVAL_BATCH,
        weight_decay=config.weight_decay,
        lr_schedule=config.lr_schedule,
        max_steps=config.max_steps,
        eval_every=config.eval_every,
    )
    return fit(
        module,
        (_tensors(train[0]), torch.from_numpy(train[1])),
        (_tensors(valid[0]), torch.from_numpy(valid[1])),
        loop,
        seed=seed,
        batch_loss=batch_loss,
        eval_loss=eval_loss,
        progress=progress,
    )


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
    seed give the same weights, graph and file sha256 (what the exporter records per process or per checkout is
    dropped: training.export.onnx_files). Raises
    InvalidInputError for a frame without labels, with an unknown label or a single class in the training days
    (field "label"), or too few rows (field "rows").
    """
    config = config or NextActionConfig()
    spec = config.input_spec()
    types = spec.type_vocab_size
    split, labels = _split(frame, config)
    started = time.perf_counter()
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    inputs = {name: next_action_inputs(part, spec) for name, part in parts.items()}
    seconds = {"inputs": time.perf_counter() - started}
    history, scores, report = _fit_and_export(inputs, labels, config, seed, onnx_path, progress, seconds)
    # the test days for the report, the validation days for the promotion gate (baselines score their "test" rows)
    on_valid = {"train": inputs["train"], "test": inputs["valid"]}
    candidates = with_validation(
        (Candidate(config.arch, scores["test"], is_model=True), *next_action_baselines(inputs, labels["train"], types)),
        (
            Candidate(config.arch, scores["valid"], is_model=True),
            *next_action_baselines(on_valid, labels["train"], types),
        ),
    )
    extra = {"rows": split.summary.rows, "best_epoch": history.best_epoch, "seconds": seconds, "path": str(onnx_path)}
    log.info("next-action model trained", extra=extra)
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
        valid_labels=labels["valid"],
        valid_groups=session_groups(split.valid),
    )


def _fit_and_export(
    inputs: dict[str, Inputs],
    labels: dict[str, np.ndarray],
    config: NextActionConfig,
    seed: int,
    onnx_path: Path,
    progress: Progress | None,
    seconds: dict[str, float],
) -> tuple[History, dict[str, np.ndarray], ExportReport]:
    """Seed, build, fit, score the validation and test days and export, with torch's threads set for the run (adds
    the timings)."""
    with torch_threads(config.max_threads):
        torch.manual_seed(seed)
        module = NextActionNet(config.input_spec(), config, *dense_statistics(inputs["train"]["dense"]))
        started = time.perf_counter()
        history = _fit(
            module, (inputs["train"], labels["train"]), (inputs["valid"], labels["valid"]), config, seed, progress
        )
        seconds["fit"] = time.perf_counter() - started
        scores = {part: predict_probabilities(module, inputs[part]) for part in ("valid", "test")}
        started = time.perf_counter()
        report = _export(module, inputs["test"], config, onnx_path)
        seconds["export"] = time.perf_counter() - started
    return history, scores, report


def _split(frame: pd.DataFrame, config: NextActionConfig) -> tuple[TimeSplit, dict[str, np.ndarray]]:
    """The time split and its label indices; refuses bad labels (before any work) and a single training class."""
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
    return split, labels


def _export(module: NextActionNet, test: Inputs, config: NextActionConfig, onnx_path: Path) -> ExportReport:
    """The ONNX file, parity-checked on the first `holdout_rows` test rows (8 of them the example batch)."""
    holdout = {name: values[: config.holdout_rows] for name, values in test.items()}
    example = {name: torch.from_numpy(np.ascontiguousarray(values[:8])) for name, values in holdout.items()}
    return export_torch(module, example, holdout, onnx_path, output_names=[NEXT_ACTION_OUTPUT_NAME])


def _params(
    config: NextActionConfig, spec: NextActionInputSpec, seed: int, history: History, train_labels: np.ndarray
) -> dict[str, Any]:
    """What the registry keeps: enough to retrain the same model and to rebuild its inputs online (input_spec)."""
    return {
        "seed": seed,
        "config": asdict(config),
        "input_spec": spec.to_dict(),
        "class_weights": class_weights(train_labels, config.class_weighting).round(6).tolist(),
        "best_epoch": history.best_epoch,
        "epochs_run": history.epochs_run,
    }
