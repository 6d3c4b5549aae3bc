"""The one training loop of the torch models (next action, next item): what every model kind fits the same way.

    fit(module, train, valid, loop, seed=..., batch_loss=..., eval_loss=..., valid_score=...)
                                                                   -> History (best evaluation's weights restored)
    mean_loss(module, x, y, eval_loss, batch_size)                 validation loss of a whole split
    batched(module, tensors, batch_size, fn)                       no-grad prediction in row batches
    torch_threads(n)                                               intra-op thread count for a run

A model module keeps only what is its own: its network, how its inputs and labels become tensors, the loss of one
batch (`batch_loss`: mean, with autograd) and of one evaluation batch (`eval_loss`: summed loss and the weight it
is normalised by), optionally a validation score to select on (`valid_score`: higher is better, e.g. hit rate at
20 of a recommender), and its hyper-parameters. The loop owns the rest: seeded shuffled mini-batches, Adam (with
weight decay if asked), the learning-rate schedule, gradient clipping at norm 1, the evaluations, early stopping
after `patience` evaluations without a better one (the best evaluation's weights are put back: validation-based
selection; with `lr_decays`, the first plateaus instead put the best weights back and go on with the learning rate
times `lr_decay`), and one log line and progress call per evaluation.

The budget is counted in optimiser steps. `max_steps` sets it (evaluating every `eval_every` steps), or, left None,
`epochs` passes over the training rows with an evaluation after each: one epoch of a 10k-row log at batch 1024 is
10 steps, too few to learn anything, while the same budget in steps fits a small log as long as a large one.
Either way the batches are the same: one seeded `randperm` per pass over the rows, cut into consecutive batches
(the last one of a pass shorter), so an epoch budget is exactly the step budget of its passes.

Determinism: the shuffling draws from its own generator seeded with `seed`; dropout and anything a `batch_loss`
draws from the global generator come in the same order on every run, so the caller seeds the global generator once
(`torch.manual_seed`) before building its network. Same data, settings and seed: same weights, bit for bit.

It lives beside `export/` and `evaluate.py` rather than in `models/`: it is a pipeline stage every torch model
kind (and later ones: policy, risk) runs through, not a model kind itself.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Literal, TypeVar

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from journey.errors import InvalidInputError

log = logging.getLogger(__name__)

Tensors = list[torch.Tensor]
Progress = Callable[[str, float], None]
BatchLoss = Callable[[Tensors, torch.Tensor], torch.Tensor]  # (inputs, labels) of a batch -> mean loss, with grad
EvalLoss = Callable[[Tensors, torch.Tensor], tuple[torch.Tensor, float]]  # -> (summed loss, its normaliser)
ValidScore = Callable[[], float]  # the module's validation score, higher is better (run in eval mode, no grad)
Schedule = Literal["one_cycle", "constant"]
T = TypeVar("T")


@dataclass(frozen=True)
class LoopSettings:
    """How to fit: the optimiser's, the budget's and the early stopping's settings, taken from a model's config."""

    name: str  # in the log lines: "next-action", "next-item"
    epochs: int  # passes over the training rows, when `max_steps` is None
    batch_size: int
    lr: float  # Adam's learning rate; the peak of the one-cycle schedule
    patience: int  # evaluations without a better one before stopping
    eval_batch: int  # rows per no-grad batch of the validation loss
    weight_decay: float = 0.0
    lr_schedule: Schedule | None = None  # None: no scheduler at all (the learning rate stays `lr`)
    max_steps: int | None = None  # the budget in optimiser steps (None: `epochs` passes)
    lr_decays: int = 0  # times a plateau multiplies the learning rate by `lr_decay` (from the best weights) first
    lr_decay: float = 0.3
    eval_every: int | None = None  # steps between evaluations, at most one pass (None: one pass over the rows)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "eval_batch", "max_steps", "eval_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidInputError(f"{name} must be >= 1", field=name, value=value)
        if self.lr_decays < 0 or not 0 < self.lr_decay < 1:
            raise InvalidInputError("lr_decays must be >= 0 and lr_decay in (0, 1)", field="lr_decay")
        if self.lr_decays and self.lr_schedule is not None:
            raise InvalidInputError("a schedule sets the learning rate itself: no lr_decays with it", field="lr_decays")

    def plan(self, rows: int) -> tuple[int, int]:
        """(total optimiser steps, steps between evaluations) for `rows` training rows: at least one evaluation per
        pass over the rows, so a small log is watched as closely (in epochs) as it overfits."""
        per_pass = max(1, math.ceil(rows / self.batch_size))
        total = self.max_steps if self.max_steps is not None else self.epochs * per_pass
        return total, min(self.eval_every or per_pass, per_pass, total)


@dataclass
class History:
    """The curves, one point per evaluation, and the evaluation whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)  # mean batch loss since the previous evaluation
    valid_loss: list[float] = field(default_factory=list)
    valid_score: list[float] = field(default_factory=list)  # empty unless the fit selected on a validation score
    steps: list[int] = field(default_factory=list)  # optimiser steps done at each evaluation
    best_epoch: int = 0  # 1-based evaluation (an epoch under an epoch budget) whose weights were kept

    @property
    def epochs_run(self) -> int:
        """Evaluations done (epochs under an epoch budget)."""
        return len(self.valid_loss)

    @property
    def best_step(self) -> int:
        return self.steps[self.best_epoch - 1] if self.best_epoch else 0

    def curves(self) -> dict[str, list[float]]:
        """What a TrainingRun carries (and the report plots)."""
        curves = {"train_loss": self.train_loss, "valid_loss": self.valid_loss}
        return {**curves, "valid_score": self.valid_score} if self.valid_score else curves


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count is process-wide: set it for the run and put the caller's back afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def batched(module: nn.Module, tensors: Tensors, batch_size: int, fn: Callable[[Tensors], T]) -> list[T]:
    """`fn` over consecutive row batches of `tensors`, in eval mode and without autograd (prediction, validation)."""
    module.eval()
    with torch.no_grad():
        return [fn([t[start : start + batch_size] for t in tensors]) for start in range(0, len(tensors[0]), batch_size)]


def mean_loss(module: nn.Module, x: Tensors, y: torch.Tensor, eval_loss: EvalLoss, batch_size: int) -> float:
    """The split's summed loss over the summed normaliser, in eval mode (the quantity early stopping watches)."""
    total, norm = 0.0, 0.0
    for loss, weight in batched(module, [*x, y], batch_size, lambda batch: eval_loss(batch[:-1], batch[-1])):
        total += float(loss)
        norm += weight
    return total / max(norm, 1e-12)


def _schedule(optimizer: torch.optim.Optimizer, loop: LoopSettings, steps: int) -> LRScheduler | None:
    """One cycle (warm up over the first 15% of the steps, then anneal): a fixed budget ends converged."""
    if loop.lr_schedule is None:
        return None
    if loop.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if loop.lr_schedule != "one_cycle":
        raise InvalidInputError(f"unknown lr_schedule {loop.lr_schedule!r}", field="lr_schedule")
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=loop.lr, total_steps=max(steps, 1), pct_start=0.15)


def _batches(rows: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Row indices of every batch, pass after pass: one seeded permutation per pass, cut in consecutive batches."""
    while True:
        order = torch.randperm(rows, generator=generator)
        yield from (order[i : i + batch_size] for i in range(0, rows, batch_size))


def fit(
    module: nn.Module,
    train: tuple[Tensors, torch.Tensor],
    valid: tuple[Tensors, torch.Tensor],
    loop: LoopSettings,
    *,
    seed: int,
    batch_loss: BatchLoss,
    eval_loss: EvalLoss,
    valid_score: ValidScore | None = None,
    progress: Progress | None = None,
) -> History:
    """Adam on shuffled mini-batches for the step budget, evaluating every `eval_every` steps; stop after `patience`
    evaluations without a better one (lower validation loss, or higher `valid_score` when given), keep the best."""
    (x, y), (x_valid, y_valid) = train, valid
    total, every = loop.plan(len(y))
    optimizer = torch.optim.Adam(module.parameters(), lr=loop.lr, weight_decay=loop.weight_decay)
    schedule = _schedule(optimizer, loop, total)
    batches = _batches(len(y), loop.batch_size, torch.Generator().manual_seed(seed))
    history = History()
    best, best_state = -math.inf, copy.deepcopy(module.state_dict())
    decays, since = 0, 0  # plateaus met so far, and the evaluation the current one is counted from
    while not history.steps or history.steps[-1] < total:
        done = history.steps[-1] if history.steps else 0
        chunk = list(islice(batches, min(every, total - done)))
        history.train_loss.append(_train_steps(module, (x, y), chunk, batch_loss, optimizer, schedule))
        history.steps.append(done + len(chunk))
        history.valid_loss.append(mean_loss(module, x_valid, y_valid, eval_loss, loop.eval_batch))
        if valid_score is not None:
            history.valid_score.append(_score(module, valid_score))
        quality = history.valid_score[-1] if valid_score is not None else -history.valid_loss[-1]
        if quality > best:
            best, history.best_epoch = quality, history.epochs_run
            best_state = copy.deepcopy(module.state_dict())
        _report(loop, history, total, progress)
        if history.epochs_run - max(history.best_epoch, since) >= loop.patience:
            if decays == loop.lr_decays:
                break
            decays, since = decays + 1, history.epochs_run  # a plateau: back to the best weights, a smaller step
            module.load_state_dict(best_state)
            for group in optimizer.param_groups:
                group["lr"] *= loop.lr_decay
            log.info("%s learning rate decayed", loop.name, extra={"step": history.steps[-1], "decays": decays})
    module.load_state_dict(best_state)
    module.eval()
    return history


def _score(module: nn.Module, valid_score: ValidScore) -> float:
    module.eval()
    with torch.no_grad():
        return float(valid_score())


def _train_steps(
    module: nn.Module,
    data: tuple[Tensors, torch.Tensor],
    batches: list[torch.Tensor],
    batch_loss: BatchLoss,
    optimizer: torch.optim.Optimizer,
    schedule: LRScheduler | None,
) -> float:
    """One optimiser step per batch; returns the mean training loss over their rows."""
    x, y = data
    module.train()
    total = 0.0
    for batch in batches:
        loss = batch_loss([t[batch] for t in x], y[batch])
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        total += loss.detach().item() * len(batch)
    return total / max(sum(len(b) for b in batches), 1)


def _report(loop: LoopSettings, history: History, total: int, progress: Progress | None) -> None:
    train, valid, best, step = history.train_loss[-1], history.valid_loss[-1], history.best_epoch, history.steps[-1]
    evaluation = history.epochs_run
    extra = {"evaluation": evaluation, "step": step, "train_loss": train, "valid_loss": valid, "best": best}
    if history.valid_score:
        extra["valid_score"] = history.valid_score[-1]
    log.info("%s evaluation", loop.name, extra=extra)
    if progress is None:
        return
    if loop.max_steps is None:  # an epoch budget: one evaluation per epoch
        where, best_at = f"epoch {evaluation}/{loop.epochs}", f"epoch {best}"
    else:
        where, best_at = f"step {step}/{total}", f"step {history.best_step}"
    score = f", valid score {history.valid_score[-1]:.4f}" if history.valid_score else ""
    progress(f"{where}: train loss {train:.4f}, valid loss {valid:.4f}{score} (best: {best_at})", step / total)
