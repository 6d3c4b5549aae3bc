"""Fitting a neural next-item kind and the `Recommender` it becomes (GRU4Rec, SASRec: see base.py's contract).

    NeuralConfig                                          the hyper-parameters every neural kind has
    fit_neural(kind, build, space, data, config, seed=)   -> NeuralRecommender (a search first when the config asks)
    fit_session_net(kind, build, data, config, seed=)     -> NeuralRecommender (one fit)
    NeuralRecommender                                     recommend, export (parity-checked), params, curves

The budget is counted in optimiser steps (`max_steps`, evaluating every `eval_every`), and the fit stops after
`patience` evaluations without a better validation score, keeping the best evaluation's weights
(`training/torch_loop.py`). The score is what the run is judged by: hit rate at 20 of the validation rows (or
MRR at 20, or the validation loss: `select`), from the very lists the exported graph answers, so "best" means best
at the job, not lowest loss. Only train and valid rows are here (`SessionData`): tuning never sees the test days.

Each training step's loss is the negative log-likelihood of the next item under the model's mixture (neural.py),
with the explore softmax over the batch's own next items plus `sampled_negatives` items drawn uniformly from the
vocabulary (0: the whole vocabulary), from a generator of its own seeded with `seed + 1`. A training row whose next
item the model cannot name (outside the vocabulary and not in the session) carries no gradient and is left out.
With `later_loss` > 0 the explore head also learns, from the same pass, to name an item the session shows later
(one of its next `later_items` next items, drawn per step): whole-session co-occurrence, what session-kNN lives on.

A hyper-parameter search (`search_trials` > 0; `journey train next-item --search N`) fits the config as given and
then variants from the kind's space (`neural_space` + the kind's own) with Optuna's TPE, judged by the same
validation score, and keeps the best fit as it is (training/search.py); its trials go into `params()["search"]`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as typed

from journey.errors import InvalidInputError
from journey.model_inputs import NextItemInputSpec
from training.export import ExportReport
from training.export.session_graph import export_session_recommender
from training.models.next_item.base import UNKNOWN_INDEX, Inputs, SessionData, Vocabulary
from training.models.next_item.neural import SessionNet, TopSlots
from training.search import SearchBudget, Space, search
from training.torch_loop import History, LoopSettings, Progress, Tensors, batched, fit, torch_threads

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

_EVAL_BATCH: Final = 2_048
SCORE_CUTOFF: Final = 20  # the lists are judged at 20 (hit rate, MRR), as the test days are
Positive = Annotated[int, Field(ge=1)]
Select = Literal["hit_rate", "mrr", "loss"]


@typed(frozen=True, config=ConfigDict(extra="forbid"))
class NeuralConfig:
    """What every neural next-item kind is fitted with. The defaults give a small log (10k events) several hundred
    optimiser steps and a large one (140k examples) a few thousand, stopped early on the validation hit rate."""

    seq_len: Annotated[int, Field(ge=1, le=20)] = 12
    top_k: Positive = 50  # items the graph returns per row: the most a request can ask for
    max_items: Positive = 50_000  # vocabulary: the most frequent items of the training split (inputs and labels)
    embedding_dim: Positive = 64
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    repeat: bool = True  # the repeat-aware head (neural.py); False: a softmax over the vocabulary only
    max_steps: Positive | None = 4_000  # the budget in optimiser steps (None: `epochs` passes over the rows)
    epochs: Positive = 4
    eval_every: Positive = 100  # optimiser steps between evaluations
    patience: Positive = 5  # evaluations without a better score before stopping (or decaying the learning rate)
    lr_decays: Annotated[int, Field(ge=0)] = 0  # plateaus that restore the best weights and go on at lr * lr_decay
    lr_decay: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.3
    batch_size: Positive = 256
    lr: Annotated[float, Field(gt=0.0, le=1.0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    sampled_negatives: Annotated[int, Field(ge=0)] = 2048  # per step, besides the batch's next items (0: all)
    later_loss: Annotated[float, Field(ge=0.0)] = 0.0  # weight of the auxiliary loss: an item later in the session
    later_items: Positive = 10  # how far ahead (in next items) that auxiliary item is drawn from
    select: Select = "hit_rate"  # what early stopping and selection watch on the validation rows
    valid_rows: Positive = 10_000  # validation rows the loss and score watch (a seeded sample when more)
    max_threads: Positive = 1  # OpenMP workers spin when the other core is busy: one is faster on a shared box
    holdout_rows: Positive = 256  # test rows the ONNX parity check runs on
    min_split_rows: Positive = 20
    eval_k: Positive = 20  # the lists are cut here for the metrics (hit rate at 10 and 20, MRR at 20)
    search_trials: Annotated[int, Field(ge=0)] = 0  # > 0: a hyper-parameter search of that many fits (search.py)
    search_seconds: Annotated[float, Field(gt=0)] | None = None  # no new search trial after this many seconds

    def budget(self) -> SearchBudget | None:
        return SearchBudget(self.search_trials, self.search_seconds) if self.search_trials else None

    def input_spec(self) -> NextItemInputSpec:
        return NextItemInputSpec(seq_len=self.seq_len, top_k=self.top_k)

    def loop(self, name: str) -> LoopSettings:
        return LoopSettings(
            name=name,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            patience=self.patience,
            eval_batch=_EVAL_BATCH,
            weight_decay=self.weight_decay,
            max_steps=self.max_steps,
            eval_every=self.eval_every,
            lr_decays=self.lr_decays,
            lr_decay=self.lr_decay,
        )


def tensors(inputs: Inputs, vocabulary: Vocabulary) -> Tensors:
    """The network's arguments: vocabulary indices (as the graph's LabelEncoder maps them), raw ids, types, lengths."""
    return [
        torch.from_numpy(vocabulary.index(inputs["item_ids"])),
        torch.from_numpy(np.ascontiguousarray(inputs["item_ids"], dtype=np.int64)),
        torch.from_numpy(np.ascontiguousarray(inputs["event_types"], dtype=np.int64)),
        torch.from_numpy(np.ascontiguousarray(inputs["lengths"], dtype=np.int64)),
    ]


def targets(labels: np.ndarray, vocabulary: Vocabulary) -> torch.Tensor:
    """[n, 2]: each next item's vocabulary index and raw id."""
    return torch.from_numpy(np.stack([vocabulary.index(labels), np.asarray(labels, dtype=np.int64)], axis=1))


def nameable(inputs: Inputs, labels: np.ndarray, vocabulary: Vocabulary, repeat: bool) -> np.ndarray:
    """Rows whose next item the model can name: in the vocabulary, or (with the repeat head) in the session."""
    known: np.ndarray = vocabulary.index(labels) != UNKNOWN_INDEX
    if not repeat:
        return known
    steps = np.arange(inputs["item_ids"].shape[1])[None, :] < inputs["lengths"][:, None]
    shown: np.ndarray = ((inputs["item_ids"] == np.asarray(labels)[:, None]) & steps).any(axis=1)
    result: np.ndarray = known | shown
    return result


class NeuralRecommender:
    """A fitted SessionNet with its vocabulary: the `Recommender` of the neural kinds."""

    def __init__(
        self, kind: str, net: SessionNet, vocabulary: Vocabulary, config: NeuralConfig, seed: int, history: History
    ) -> None:
        self.kind, self.net, self.vocabulary, self.config, self.seed = kind, net, vocabulary, config, seed
        self.history = history
        self.search: dict[str, Any] | None = None  # the hyper-parameter search that chose `config`, when one did

    @property
    def best_score(self) -> float:
        """The validation score the fit selected on (higher is better: minus the loss when it selected on loss)."""
        history = self.history
        if history.valid_score:
            return history.valid_score[history.best_epoch - 1]
        return -history.valid_loss[history.best_epoch - 1] if history.best_epoch else float("-inf")

    def curves(self) -> dict[str, list[float]]:
        """The learning curves, one point per evaluation (base.LearningCurves: TrainingRun.history)."""
        return self.history.curves()

    def top(self, k: int) -> TopSlots:
        return TopSlots(self.net, torch.from_numpy(self.vocabulary.table()), k).eval()

    def recommend(self, inputs: Inputs, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ids [n, k] (-1 where fewer than k can be named) and their probabilities, best first."""
        module = self.top(min(k, self.net.n_slots))

        def run(batch: Tensors) -> tuple[np.ndarray, np.ndarray]:
            ids, scores = module(*batch)
            return ids.numpy(), scores.numpy()

        with torch_threads(self.config.max_threads):
            parts = batched(module, tensors(inputs, self.vocabulary), _EVAL_BATCH, run)
        if not parts:
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        ids, scores = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        ids = np.where(scores < 0, -1, ids)  # a slot that is no candidate: fewer than k items to name
        pad = k - ids.shape[1]
        return np.pad(ids, ((0, 0), (0, pad)), constant_values=-1), np.pad(scores, ((0, 0), (0, pad)))

    def export(self, path: Path, holdout: Inputs, top_k: int) -> ExportReport:
        """The self-contained graph (LabelEncoder, network, top-k, ids), parity-checked against `recommend`."""
        if not 1 <= top_k <= len(self.vocabulary):
            raise InvalidInputError(
                f"top_k must be in 1..{len(self.vocabulary)} (the vocabulary)", field="top_k", value=top_k
            )
        with torch_threads(self.config.max_threads):
            return export_session_recommender(
                self.top(top_k),
                self.vocabulary.ids,
                holdout,
                path,
                native=lambda feeds: list(self.recommend(feeds, top_k)),
            )

    def params(self) -> dict[str, Any]:
        history = self.history
        params: dict[str, Any] = {
            "kind": self.kind,
            "seed": self.seed,
            "config": asdict(self.config),
            "input_spec": self.config.input_spec().to_dict(),
            "vocabulary_size": len(self.vocabulary),
            "best_evaluation": history.best_epoch,
            "best_step": history.best_step,
            "steps_run": history.steps[-1] if history.steps else 0,
            "evaluations": history.epochs_run,
        }
        if history.valid_score:
            params["best_valid_score"] = history.valid_score[history.best_epoch - 1]
        if self.search is not None:
            params["search"] = self.search
        return params


def neural_space(trial: optuna.Trial) -> dict[str, Any]:
    """What a search varies for every neural kind (a kind adds its own: see gru.py, sasrec.py)."""
    return {
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "embedding_dim": trial.suggest_categorical("embedding_dim", [32, 64, 128]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "weight_decay": trial.suggest_categorical("weight_decay", [0.0, 1e-6, 1e-5, 1e-4]),
        "batch_size": trial.suggest_categorical("batch_size", [128, 256, 512]),
    }


def fit_neural(
    kind: str,
    build: Callable[[Any, int], SessionNet],
    space: Space,
    data: SessionData,
    config: NeuralConfig,
    *,
    seed: int,
    progress: Progress | None = None,
) -> NeuralRecommender:
    """Fit `kind` with `config`, or, when `config.search_trials` > 0, search its hyper-parameters (`space`) on the
    validation split within that budget and keep the best fit (its `search` says how it was found)."""
    width = data.train["item_ids"].shape[1]
    if width != config.seq_len:
        raise InvalidInputError(
            f"the inputs hold {width} steps but the {kind} config says seq_len {config.seq_len}",
            field="seq_len",
            value=config.seq_len,
        )
    budget = config.budget()

    def fit_one(trial: Any, report: Progress | None = None) -> NeuralRecommender:
        return fit_session_net(kind, lambda n: build(trial, n), data, trial, seed=seed, progress=report)

    if budget is None:
        return fit_one(config, progress)
    model, record = search(
        fit_one, lambda m: m.best_score, config, space, budget, seed=seed, metric=f"{config.select}@{SCORE_CUTOFF}"
    )
    model.search = record
    return model


def fit_session_net(
    kind: str,
    build: Callable[[int], SessionNet],
    data: SessionData,
    config: NeuralConfig,
    *,
    seed: int,
    progress: Progress | None = None,
) -> NeuralRecommender:
    """Vocabulary from the training rows, `build(vocabulary size)` seeded, fitted by the shared loop (module doc)."""
    vocabulary = Vocabulary.build(data.train, data.train_labels, config.max_items)
    keep = torch.from_numpy(nameable(data.train, data.train_labels, vocabulary, config.repeat))
    x = [t[keep] for t in tensors(data.train, vocabulary)]
    y = targets(data.train_labels, vocabulary)
    if config.later_loss > 0:  # the later items travel with the targets, so they are batched with them
        y = torch.cat([y, torch.from_numpy(later_items(data, vocabulary, config.later_items))], dim=1)
    y = y[keep]
    valid = _valid_rows(data, vocabulary, config.valid_rows, seed)
    with torch_threads(config.max_threads):
        torch.manual_seed(seed)
        net = build(len(vocabulary))
        _popularity_prior(net, vocabulary, data.train_labels)
        negative_rng = torch.Generator().manual_seed(seed + 1)

        def batch_loss(x: Tensors, y: torch.Tensor) -> torch.Tensor:
            if config.later_loss <= 0:
                candidates = _candidates(y[:, 0], net.bias.numel(), config.sampled_negatives, negative_rng)
                return -net.log_likelihood(x, y, candidates)[0].mean()
            later = _draw(y[:, 2:], negative_rng)
            candidates = _candidates(
                torch.cat([y[:, 0], later]), net.bias.numel(), config.sampled_negatives, negative_rng
            )
            log_p, _, log_later = net.likelihoods(x, y[:, :2], candidates, later.clamp(min=1))
            drawn = (later != UNKNOWN_INDEX).to(log_p.dtype)
            aux = -(log_later * drawn).sum() / drawn.sum().clamp(min=1.0) if log_later is not None else 0.0
            return -log_p.mean() + config.later_loss * aux

        validation = _Validation(net, config.select)
        score = None if config.select == "loss" else validation.score
        history = fit(
            net, (x, y), valid, config.loop(kind), seed=seed, batch_loss=batch_loss, eval_loss=validation.loss,
            valid_score=score, progress=progress,
        )  # fmt: skip
    log.info("%s fitted", kind, extra={"items": len(vocabulary), "best_step": history.best_step})
    return NeuralRecommender(kind, net, vocabulary, config, seed, history)


def _popularity_prior(net: SessionNet, vocabulary: Vocabulary, labels: np.ndarray) -> None:
    """Start each item's bias at the log of its smoothed share of the training next items: from the first step an
    empty session (no state, no repeat term) is answered with the popular items, and the network learns the rest."""
    counts = np.bincount(vocabulary.index(labels), minlength=len(vocabulary) + 1).astype(np.float64)
    with torch.no_grad():
        net.bias.copy_(torch.from_numpy(np.log((counts + 1.0) / (counts.sum() + len(counts)))).to(net.bias.dtype))


def later_items(data: SessionData, vocabulary: Vocabulary, horizon: int) -> np.ndarray:
    """[n_train, horizon]: for each training row, the vocabulary indices of the next items of the session's later
    rows (the items it shows after this row's next one), 0 for padding, unknown items and items already in this
    row's steps (the repeat head's, not the explore head's). Rows are in time order within a session (the split's
    order); without session ids every row is its own session (nothing later)."""
    n = len(data.train_labels)
    sessions = data.train_sessions if data.train_sessions is not None else np.arange(n)
    order = np.lexsort((np.arange(n), pd.factorize(sessions)[0]))
    index = vocabulary.index(data.train_labels)[order]
    group = pd.factorize(sessions)[0][order]
    result = np.zeros((n, horizon), dtype=np.int64)
    for ahead in range(1, horizon + 1):
        same = np.zeros(n, dtype=bool)
        same[:-ahead] = group[ahead:] == group[:-ahead]
        result[order[same], ahead - 1] = index[ahead:][same[:-ahead]]
    steps = np.arange(data.train["item_ids"].shape[1])[None, :] < data.train["lengths"][:, None]
    seen = vocabulary.index(np.where(steps, data.train["item_ids"], -1))
    result[(result[:, :, None] == seen[:, None, :]).any(axis=2)] = 0
    return result


def _draw(later: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """[n]: one of each row's later items, uniformly (UNKNOWN_INDEX for a row with none)."""
    noise = torch.rand(later.shape, generator=rng).masked_fill(later == UNKNOWN_INDEX, -1.0)
    return later.gather(1, noise.argmax(dim=1, keepdim=True)).squeeze(1)


def _candidates(labels: torch.Tensor, size: int, negatives: int, rng: torch.Generator) -> torch.Tensor | None:
    """Sorted vocabulary indices of one step's softmax: the batch's next items plus uniform draws (None: all)."""
    if negatives <= 0:
        return None
    drawn = torch.randint(1, size, (negatives,), generator=rng)
    candidates: torch.Tensor = torch.unique(torch.cat([labels[labels != UNKNOWN_INDEX], drawn]))
    return candidates


class _Validation:
    """One forward pass over the validation rows per evaluation gives both what the loop records (the loss, through
    `loss` as its eval_loss) and what it selects on (`score`: hit rate or MRR at 20 from the ranks that pass left;
    the loop always calls `score` right after the loss of the same rows). The rank of the next item is one plus the
    number of slots scored above it: the place `recommend` gives it, without a top-k over the vocabulary."""

    def __init__(self, net: SessionNet, select: Select) -> None:
        self.net, self.select = net, select
        self.ranks: list[torch.Tensor] = []

    def loss(self, x: Tensors, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        slots = self.net(*x)
        slot = self.net.label_slots(x[0], x[1], x[3], y)
        nameable = slot >= 0
        p = slots.gather(1, slot.clamp(min=0).unsqueeze(1)).squeeze(1)
        self.ranks.append(torch.where(nameable, (slots > p.unsqueeze(1)).sum(dim=1) + 1, 0))
        return -(torch.log(p.clamp(min=1e-12)) * nameable).sum(), float(int(nameable.sum()))

    def score(self) -> float:
        rank = torch.cat(self.ranks).double()
        self.ranks.clear()
        found = (rank > 0) & (rank <= SCORE_CUTOFF)
        if self.select == "hit_rate":
            return float(found.double().mean())
        return float(torch.where(found, 1.0 / rank.clamp(min=1), 0.0).mean())


def _valid_rows(data: SessionData, vocabulary: Vocabulary, rows: int, seed: int) -> tuple[Tensors, torch.Tensor]:
    """The validation rows the fit watches: all of them, or a seeded sample of `rows` (in their order)."""
    n = len(data.valid_labels)
    take = np.arange(n) if n <= rows else np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))
    index = torch.from_numpy(take)
    return [t[index] for t in tensors(data.valid, vocabulary)], targets(data.valid_labels, vocabulary)[index]
