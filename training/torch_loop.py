"""The one training loop of the torch models (next action, next item): what every model kind fits the same way.

    fit(module, train, valid, loop, seed=..., batch_loss=..., eval_loss=...)   -> History (best epoch restored)
    mean_loss(module, x, y, eval_loss, batch_size)                             validation loss of a whole split
    batched(module, tensors, batch_size, fn)                                   no-grad prediction in row batches
    torch_threads(n)                                                           intra-op thread count for a run

A model module keeps only what is its own: its network, how its inputs and labels become tensors, the loss of one
batch (`batch_loss`: mean, with autograd) and of one evaluation batch (`eval_loss`: summed loss and the weight it
is normalised by), and its hyper-parameters. The loop owns the rest: seeded shuffled mini-batches, Adam (with
weight decay if asked), the learning-rate schedule, gradient clipping at norm 1, the validation loss after each
epoch, early stopping after `patience` epochs without a lower validation loss (the best epoch's weights are put
back), and one log line and progress call per epoch.

Determinism: the shuffling draws from its own generator seeded with `seed`, one `randperm` per epoch; dropout and
anything a `batch_loss` draws from the global generator come in the same order on every run, so the caller seeds
the global generator once (`torch.manual_seed`) before building its network. Same data, settings and seed: same
weights, bit for bit.

It lives beside `export.py` and `evaluate.py` rather than in `models/`: it is a pipeline stage every torch model
kind (and later ones: policy, risk) runs through, not a model kind itself.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
Schedule = Literal["one_cycle", "constant"]
T = TypeVar("T")


@dataclass(frozen=True)
class LoopSettings:
    """How to fit: the optimiser's and the early stopping's settings, taken from a model's config."""

    name: str  # in the log lines: "next-action", "next-item"
    epochs: int
    batch_size: int
    lr: float  # Adam's learning rate; the peak of the one-cycle schedule
    patience: int  # epochs without a lower validation loss before stopping
    eval_batch: int  # rows per no-grad batch of the validation loss
    weight_decay: float = 0.0
    lr_schedule: Schedule | None = None  # None: no scheduler at all (the learning rate stays `lr`)


@dataclass
class History:
    """The loss curves and the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0

    @property
    def epochs_run(self) -> int:
        return len(self.valid_loss)


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
    """One cycle (warm up over the first 15% of the steps, then anneal): a fixed epoch budget ends converged."""
    if loop.lr_schedule is None:
        return None
    if loop.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if loop.lr_schedule != "one_cycle":
        raise InvalidInputError(f"unknown lr_schedule {loop.lr_schedule!r}", field="lr_schedule")
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=loop.lr, total_steps=max(steps, 1), pct_start=0.15)


def fit(
    module: nn.Module,
    train: tuple[Tensors, torch.Tensor],
    valid: tuple[Tensors, torch.Tensor],
    loop: LoopSettings,
    *,
    seed: int,
    batch_loss: BatchLoss,
    eval_loss: EvalLoss,
    progress: Progress | None = None,
) -> History:
    """Adam on shuffled mini-batches; stop after `patience` epochs without a better validation loss, keep the best."""
    (x, y), (x_valid, y_valid) = train, valid
    optimizer = torch.optim.Adam(module.parameters(), lr=loop.lr, weight_decay=loop.weight_decay)
    schedule = _schedule(optimizer, loop, steps=loop.epochs * math.ceil(len(y) / loop.batch_size))
    order_rng = torch.Generator().manual_seed(seed)
    history = History()
    best_loss, best_state = float("inf"), copy.deepcopy(module.state_dict())
    for epoch in range(1, loop.epochs + 1):
        order = torch.randperm(len(y), generator=order_rng)
        batches = [order[i : i + loop.batch_size] for i in range(0, len(order), loop.batch_size)]
        history.train_loss.append(_train_epoch(module, (x, y), batches, batch_loss, optimizer, schedule))
        history.valid_loss.append(mean_loss(module, x_valid, y_valid, eval_loss, loop.eval_batch))
        if history.valid_loss[-1] < best_loss:
            best_loss, history.best_epoch = history.valid_loss[-1], epoch
            best_state = copy.deepcopy(module.state_dict())
        _report_epoch(loop, history, epoch, progress)
        if epoch - history.best_epoch >= loop.patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    return history


def _train_epoch(
    module: nn.Module,
    data: tuple[Tensors, torch.Tensor],
    batches: list[torch.Tensor],
    batch_loss: BatchLoss,
    optimizer: torch.optim.Optimizer,
    schedule: LRScheduler | None,
) -> float:
    """One pass over the batches; returns the mean training loss."""
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


def _report_epoch(loop: LoopSettings, history: History, epoch: int, progress: Progress | None) -> None:
    train, valid, best = history.train_loss[-1], history.valid_loss[-1], history.best_epoch
    extra = {"epoch": epoch, "train_loss": train, "valid_loss": valid, "best_epoch": best}
    log.info("%s epoch", loop.name, extra=extra)
    if progress is not None:
        progress(
            f"epoch {epoch}/{loop.epochs}: train loss {train:.4f}, valid loss {valid:.4f} (best: epoch {best})",
            epoch / loop.epochs,
        )
