"""`journey train`: fit a model on a stored dataset, export it to ONNX, evaluate it and register the version.

`--promote` promotes the new version only when it passes the promotion gate (it beats the best baseline on the
validation days, `training/gate.py`); otherwise the version stays registered in staging and the command exits 2
naming the best baseline and the interval. `--force-promote --reason TEXT` promotes it anyway, the reason in the
registry's audit log.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import cli_errors, console, start

if TYPE_CHECKING:
    from training.pipeline import ModelKind, PipelineResult

app = typer.Typer(help="Train, export (ONNX, parity-checked), evaluate and register models.", no_args_is_help=True)

DatasetOption = Annotated[str, typer.Option("--dataset", "-d", help="Canonical event dataset to train on.")]
SeedOption = Annotated[int | None, typer.Option(help="Seed for sampling and training (default: JOURNEY_SEED).")]
MaxExamplesOption = Annotated[int, typer.Option(min=1, help="Cap on training examples (sampled with the seed).")]
BuildOption = Annotated[
    bool,
    typer.Option(help="First rebuild the offline features from this dataset and apply the Feast repo."),
]
PromoteOption = Annotated[
    bool,
    typer.Option(help="Promote the new version to production if it passes the promotion gate (else exit 2)."),
]
ForcePromoteOption = Annotated[
    bool,
    typer.Option("--force-promote", help="Promote even if the gate fails (needs --reason; recorded in the audit log)."),
]
ReasonOption = Annotated[str | None, typer.Option(help="Why --force-promote overrides the gate (audited).")]
KindOption = Annotated[
    str,
    typer.Option(
        help="Next-item kind: gru4rec, sasrec (networks), popularity, markov (last item), covisitation, sknn "
        "(session-kNN), or auto (fit every kind, serve the best on the validation days; options and --config "
        "apply to gru4rec)."
    ),
]


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        dir_okay=False,
        help="YAML file of the trainer's hyper-parameters (configs/*.yaml; unknown keys are refused). The options "
        "below override it.",
    ),
]
MaxStepsOption = Annotated[
    int | None, typer.Option(min=1, help="Training budget in optimiser steps (early stopping may end it sooner).")
]
EvalEveryOption = Annotated[int | None, typer.Option(min=1, help="Optimiser steps between validation evaluations.")]
PatienceOption = Annotated[
    int | None, typer.Option(min=1, help="Evaluations without a better validation score before stopping.")
]
BatchSizeOption = Annotated[int | None, typer.Option(min=1, help="Training rows per optimiser step.")]
LrOption = Annotated[float | None, typer.Option(min=0.0, help="Adam's learning rate.")]
SearchOption = Annotated[
    int | None,
    typer.Option(
        "--search",
        min=1,
        help="Hyper-parameter search of this many fits (Optuna TPE on the validation days; the first fit is the "
        "config as given). The best is exported and registered; every trial is in its params and report.",
    ),
]
SearchSecondsOption = Annotated[
    float | None, typer.Option(min=1.0, help="Search time budget: no new trial after this many seconds.")
]
ArchOption = Annotated[str | None, typer.Option("--arch", help="Sequence encoder: gru or transformer.")]


def _hyper_parameters(model: str, kind: str, path: Path | None, overrides: dict[str, Any]) -> Any:
    """The trainer's config: its defaults, then the file, then the options given; None when neither was given."""
    if path is None and all(value is None for value in overrides.values()):
        return None
    from training.configs import load_config

    if model == "next-item":
        from training.models.next_item import config_type_of

        return load_config(config_type_of(kind), path, overrides)
    from training.models.next_action import NextActionConfig

    return load_config(NextActionConfig, path, overrides)


def _print_result(result: PipelineResult) -> None:
    evaluation, run = result.evaluation, result.run
    title = f"{run.model_name} v{result.version.version} on the test days (model first, then baselines)"
    table = Table("metric", *(c.name for c in run.candidates), title=title)
    for metric in evaluation.metrics[run.model.name]:
        values = [evaluation.metrics[c.name][metric] for c in run.candidates]
        table.add_row(metric, *("—" if v is None else f"{v:.4f}" for v in values))
    console.print(table)
    rows = run.split.rows
    console.print(
        f"rows: train {rows['train']:,} / valid {rows['valid']:,} / test {rows['test']:,} ({run.split.method}); "
        f"parity {run.export.parity_max_abs_diff:.1e}; seconds {result.seconds}"
    )
    gate = result.gate
    verdict = "[bold green]PASS[/]" if gate.passed else "[bold red]FAIL[/]"
    console.print(f"promotion gate (validation days): {verdict} {gate.reason}", highlight=False)
    console.print(f"registered [bold]{run.model_name}[/] version {result.version.version} ({result.version.stage})")
    console.print(f"model stored in BentoML as [bold]{result.version.bento_tag}[/]")
    console.print(f"report written to [bold]{result.report}[/]")


def _train(
    kind: ModelKind,
    dataset: str,
    seed: int | None,
    max_examples: int,
    build: bool,
    promote: bool,
    horizon: str = "session",
    *,
    force_promote: bool = False,
    reason: str | None = None,
    recommender: str | None = None,
    config: Any = None,
) -> None:
    from journey.stores.feature_store import apply
    from training.pipeline import build_offline, parse_horizon, promote_trained, run_training
    from training.promotion import check_override

    settings = start()
    parsed_horizon = parse_horizon(horizon)
    force_reason = check_override(force_promote, reason, "--force-promote")  # refused before any work
    if build:
        with console.status(f"building offline features from {dataset!r}") as status:
            build_offline(dataset, settings, progress=lambda step: status.update(step))
            status.update("feast apply")
            apply(settings)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=1.0)
        result = run_training(
            kind,
            dataset,
            settings,
            seed=seed,
            max_examples=max_examples,
            horizon=parsed_horizon,
            progress=lambda step, fraction: bar.update(task, description=step, completed=fraction),
            recommender=recommender,
            config=config,
        )
    _print_result(result)
    if promote or force_promote:
        actor = "journey train --force-promote" if force_reason else "journey train --promote"
        promoted = promote_trained(result, settings, actor=actor, force_reason=force_reason)
        forced = " [bold yellow](forced past the gate; reason audited)[/]" if not result.gate.passed else ""
        console.print(f"promoted {promoted.name} version {promoted.version} to [bold]{promoted.stage}[/]{forced}")


@app.command()
@cli_errors
def propensity(
    dataset: DatasetOption = "demo",
    seed: SeedOption = None,
    max_examples: MaxExamplesOption = 200_000,
    horizon: Annotated[
        str, typer.Option(help="Label window: 'session' (a purchase later in the same session) or e.g. 7d, 6h.")
    ] = "session",
    build_features: BuildOption = False,
    promote: PromoteOption = False,
    force_promote: ForcePromoteOption = False,
    reason: ReasonOption = None,
) -> None:
    """XGBoost purchase propensity on purchase_propensity_v1 (baselines: logistic regression, cart heuristic)."""
    _train(
        "propensity",
        dataset,
        seed,
        max_examples,
        build_features,
        promote,
        horizon,
        force_promote=force_promote,
        reason=reason,
    )


@app.command("next-action")
@cli_errors
def next_action(
    dataset: DatasetOption = "demo",
    seed: SeedOption = None,
    max_examples: MaxExamplesOption = 200_000,
    build_features: BuildOption = False,
    promote: PromoteOption = False,
    force_promote: ForcePromoteOption = False,
    reason: ReasonOption = None,
    arch: ArchOption = None,
    config: ConfigOption = None,
    max_steps: MaxStepsOption = None,
    eval_every: EvalEveryOption = None,
    patience: PatienceOption = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
) -> None:
    """PyTorch GRU or Transformer next action / exit on next_action_v1 (baselines: last-action repeat, first-order
    Markov)."""
    options = {"arch": arch, "max_steps": max_steps, "eval_every": eval_every, "patience": patience}
    hyper = _hyper_parameters("next-action", "", config, {**options, "batch_size": batch_size, "lr": lr})
    _train(
        "next-action",
        dataset,
        seed,
        max_examples,
        build_features,
        promote,
        force_promote=force_promote,
        reason=reason,
        config=hyper,
    )


@app.command("next-item")
@cli_errors
def next_item(
    dataset: DatasetOption = "demo",
    seed: SeedOption = None,
    max_examples: MaxExamplesOption = 200_000,
    build_features: BuildOption = False,
    promote: PromoteOption = False,
    force_promote: ForcePromoteOption = False,
    reason: ReasonOption = None,
    kind: KindOption = "gru4rec",
    config: ConfigOption = None,
    max_steps: MaxStepsOption = None,
    eval_every: EvalEveryOption = None,
    patience: PatienceOption = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    search: SearchOption = None,
    search_seconds: SearchSecondsOption = None,
) -> None:
    """Next item on next_item_v1, top-k in the ONNX graph: a PyTorch network (GRU4Rec, SASRec; repeat-aware) or an
    index kind (every kind a `next_item` version; baselines in every report: popularity, markov, covisitation,
    sknn). Hyper-parameters: the kind's defaults, then --config, then the options (`--search N` tunes them)."""
    _train(
        "next-item",
        dataset,
        seed,
        max_examples,
        build_features,
        promote,
        force_promote=force_promote,
        reason=reason,
        recommender=kind,
        config=_hyper_parameters(
            "next-item",
            kind,
            config,
            {
                "max_steps": max_steps,
                "eval_every": eval_every,
                "patience": patience,
                "batch_size": batch_size,
                "lr": lr,
                "search_trials": search,
                "search_seconds": search_seconds,
            },
        ),
    )
