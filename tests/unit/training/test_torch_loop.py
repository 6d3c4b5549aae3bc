"""The shared torch loop on a tiny linear model: early stopping keeps the best epoch, seeds decide everything, and
the helpers leave no global state behind. The model trainers' own tests cover the loop on the real networks."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from journey.errors import InvalidInputError
from training.torch_loop import History, LoopSettings, Tensors, batched, fit, mean_loss, torch_threads

LOOP = LoopSettings(name="tiny", epochs=6, batch_size=8, lr=0.05, patience=2, eval_batch=1_000)


def _data(seed: int, rows: int = 64) -> tuple[Tensors, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 3, generator=generator)
    return [x], x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(rows, generator=generator)


def _fit(seed: int, loop: LoopSettings = LOOP, **overrides: Any) -> tuple[nn.Linear, History]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)

    def batch_loss(x: Tensors, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(model(x[0]).squeeze(1), y)

    def eval_loss(x: Tensors, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        return nn.functional.mse_loss(model(x[0]).squeeze(1), y, reduction="sum"), float(len(y))

    options: dict[str, Any] = {"batch_loss": batch_loss, "eval_loss": eval_loss, **overrides}
    history = fit(model, _data(1), _data(2), loop, seed=seed, **options)
    return model, history


def test_the_same_seed_gives_the_same_weights_and_curves() -> None:
    first, history = _fit(seed=3)
    again, history_again = _fit(seed=3)
    assert history == history_again
    assert torch.equal(first.weight, again.weight) and torch.equal(first.bias, again.bias)
    other, _ = _fit(seed=4)  # another shuffling order
    assert not torch.equal(first.weight, other.weight)


def test_patience_stops_and_the_best_epochs_weights_are_put_back() -> None:
    scripted = iter([3.0, 1.0, 2.0, 4.0, 0.5, 0.1])  # best at epoch 2, then two worse epochs: stop after epoch 4
    states: list[dict[str, torch.Tensor]] = []
    model_box: list[nn.Module] = []

    def eval_loss(x: Tensors, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        states.append(copy.deepcopy(model_box[0].state_dict()))
        return torch.tensor(next(scripted)), 1.0

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    model_box.append(model)
    history = fit(
        model,
        _data(1),
        _data(2),
        LOOP,
        seed=3,
        batch_loss=lambda x, y: nn.functional.mse_loss(model(x[0]).squeeze(1), y),
        eval_loss=eval_loss,
    )

    assert history.valid_loss == [3.0, 1.0, 2.0, 4.0] and history.best_epoch == 2 and history.epochs_run == 4
    assert len(history.train_loss) == 4
    assert all(torch.equal(value, states[1][name]) for name, value in model.state_dict().items())
    assert not model.training


def test_every_epoch_is_reported_with_its_losses_and_progress() -> None:
    messages: list[tuple[str, float]] = []
    _, history = _fit(seed=3, progress=lambda message, fraction: messages.append((message, fraction)))
    assert len(messages) == history.epochs_run
    assert messages[0][0].startswith(f"epoch 1/{LOOP.epochs}: train loss ") and messages[0][1] == 1 / LOOP.epochs


def test_a_constant_schedule_is_no_schedule_and_one_cycle_changes_the_path() -> None:
    _, plain = _fit(seed=3)
    _, constant = _fit(seed=3, loop=LoopSettings(**{**LOOP.__dict__, "lr_schedule": "constant"}))
    _, one_cycle = _fit(seed=3, loop=LoopSettings(**{**LOOP.__dict__, "lr_schedule": "one_cycle"}))
    assert constant == plain  # a factor of 1.0 every step: the same floats
    assert one_cycle.valid_loss != plain.valid_loss
    assert one_cycle.valid_loss == sorted(one_cycle.valid_loss, reverse=True)  # warm up, then anneal: still descends


def test_an_unknown_schedule_is_refused_naming_it() -> None:
    with pytest.raises(InvalidInputError) as raised:
        _fit(seed=3, loop=LoopSettings(**{**LOOP.__dict__, "lr_schedule": "cosine"}))
    assert raised.value.field == "lr_schedule"


def test_batched_runs_without_autograd_in_eval_mode_in_row_order() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5)).train()
    x, _ = _data(1, rows=10)
    parts = batched(model, x, 4, lambda batch: model(batch[0]))
    assert [len(p) for p in parts] == [4, 4, 2] and not any(p.requires_grad for p in parts)
    assert not model.training
    assert torch.equal(torch.cat(parts), model(x[0]).detach())  # eval mode: dropout off, same answers


def test_mean_loss_is_the_summed_loss_over_the_summed_normaliser() -> None:
    model = nn.Linear(3, 1)
    x, y = _data(1, rows=10)

    def eval_loss(batch: Tensors, target: torch.Tensor) -> tuple[torch.Tensor, float]:
        return nn.functional.mse_loss(model(batch[0]).squeeze(1), target, reduction="sum"), float(len(target))

    with torch.no_grad():
        expected = float(nn.functional.mse_loss(model(x[0]).squeeze(1), y))
    assert mean_loss(model, x, y, eval_loss, batch_size=3) == pytest.approx(expected, rel=1e-6)


def test_torch_threads_sets_the_count_for_the_run_and_puts_it_back() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
