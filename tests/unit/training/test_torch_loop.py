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


# --------------------------------------------------------------------------------------------------------------
# Budgets in optimiser steps, evaluations, selection on a validation score
# --------------------------------------------------------------------------------------------------------------

STEPS = LoopSettings(**{**LOOP.__dict__, "max_steps": 20, "eval_every": 3, "patience": 100})


def test_a_step_budget_evaluates_every_eval_every_steps_and_stops_at_max_steps() -> None:
    _, history = _fit(seed=3, loop=STEPS)  # 64 rows at batch 8: 8 steps a pass
    assert history.steps == [3, 6, 9, 12, 15, 18, 20]  # the last evaluation after the budget's last step
    assert history.epochs_run == 7 and len(history.train_loss) == 7
    assert history.best_step == history.steps[history.best_epoch - 1]


def test_an_epoch_budget_is_the_step_budget_of_its_passes_bit_for_bit() -> None:
    by_epochs, epochs = _fit(seed=3, loop=LoopSettings(**{**LOOP.__dict__, "patience": 100}))
    by_steps, steps = _fit(seed=3, loop=LoopSettings(**{**LOOP.__dict__, "patience": 100, "max_steps": 48}))
    assert epochs.steps == steps.steps == [8, 16, 24, 32, 40, 48]
    assert epochs == steps
    assert torch.equal(by_epochs.weight, by_steps.weight)


def test_evaluations_come_at_least_once_a_pass_whatever_eval_every_says() -> None:
    assert LoopSettings(**{**STEPS.__dict__, "eval_every": 500}).plan(rows=64) == (20, 8)
    assert LoopSettings(**{**LOOP.__dict__, "eval_every": 5}).plan(rows=64) == (48, 5)
    assert LOOP.plan(rows=1) == (6, 1)


def test_patience_counts_evaluations_and_a_validation_score_selects_the_weights() -> None:
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.9])  # higher is better: best at evaluation 2, then two worse: stop
    states: list[dict[str, torch.Tensor]] = []
    torch.manual_seed(0)
    model = nn.Linear(3, 1)

    def score() -> float:
        assert not model.training and not torch.is_grad_enabled()
        states.append(copy.deepcopy(model.state_dict()))
        return next(scripted)

    history = fit(
        model,
        _data(1),
        _data(2),
        LoopSettings(**{**STEPS.__dict__, "patience": 2}),
        seed=3,
        batch_loss=lambda x, y: nn.functional.mse_loss(model(x[0]).squeeze(1), y),
        eval_loss=lambda x, y: (nn.functional.mse_loss(model(x[0]).squeeze(1), y, reduction="sum"), float(len(y))),
        valid_score=score,
    )

    assert history.valid_score == [0.1, 0.5, 0.4, 0.3] and history.best_epoch == 2 and history.best_step == 6
    assert len(history.valid_loss) == 4  # the loss is still recorded (the report's curve)
    assert all(torch.equal(value, states[1][name]) for name, value in model.state_dict().items())
    assert history.curves() == {
        "train_loss": history.train_loss,
        "valid_loss": history.valid_loss,
        "valid_score": [0.1, 0.5, 0.4, 0.3],
    }


def test_a_step_budget_reports_steps() -> None:
    messages: list[tuple[str, float]] = []
    _fit(seed=3, loop=STEPS, progress=lambda message, fraction: messages.append((message, fraction)))
    assert messages[0][0].startswith("step 3/20: train loss ") and messages[0][1] == 3 / 20
    assert messages[-1][1] == 1.0


@pytest.mark.parametrize("name", ["epochs", "batch_size", "patience", "max_steps", "eval_every"])
def test_a_budget_below_one_is_refused_naming_it(name: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        LoopSettings(**{**STEPS.__dict__, name: 0})
    assert raised.value.field == name


def test_a_plateau_first_decays_the_learning_rate_from_the_best_weights_then_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rates: list[float] = []

    class Recording(torch.optim.Adam):
        def step(self, closure: Any = None) -> Any:
            rates.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", Recording)
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.6, 0.2, 0.2, 0.9])  # plateau at 4 (decay), best at 5, plateau at 7: stop
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    states: list[dict[str, torch.Tensor]] = []

    def batch_loss(x: Tensors, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(model(x[0]).squeeze(1), y)

    def score() -> float:
        states.append(copy.deepcopy(model.state_dict()))
        return next(scripted)

    loop = LoopSettings(**{**STEPS.__dict__, "patience": 2, "lr_decays": 1, "lr_decay": 0.5})
    history = fit(
        model,
        _data(1),
        _data(2),
        loop,
        seed=3,
        batch_loss=batch_loss,
        eval_loss=lambda x, y: (batch_loss(x, y) * len(y), float(len(y))),
        valid_score=score,
    )

    assert history.valid_score == [0.1, 0.5, 0.4, 0.3, 0.6, 0.2, 0.2] and history.best_epoch == 5
    # 3 steps an evaluation: 4 evaluations at lr, then 3 + 3 + the budget's last 2 steps at half of it
    assert rates == [LOOP.lr] * 12 + [LOOP.lr * 0.5] * 8
    assert all(torch.equal(value, states[4][name]) for name, value in model.state_dict().items())


def test_a_schedule_and_plateau_decays_together_are_refused() -> None:
    with pytest.raises(InvalidInputError) as raised:
        LoopSettings(**{**LOOP.__dict__, "lr_schedule": "one_cycle", "lr_decays": 1})
    assert raised.value.field == "lr_decays"
