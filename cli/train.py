"""`journey train`: fit a model on a stored dataset, export it to ONNX, evaluate it and register the version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

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
PromoteOption = Annotated[bool, typer.Option(help="Promote the new version to production when it is registered.")]


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
) -> None:
    from journey.stores.feature_store import apply
    from training.pipeline import build_offline, parse_horizon, run_training

    settings = start()
    parsed_horizon = parse_horizon(horizon)
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
        )
    _print_result(result)
    if promote:
        from journey.registry import Registry

        with Registry(settings) as registry:
            promoted = registry.promote(result.run.model_name, result.version.version, actor="journey train --promote")
        console.print(f"promoted {promoted.name} version {promoted.version} to [bold]{promoted.stage}[/]")


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
) -> None:
    """XGBoost purchase propensity on purchase_propensity_v1 (baselines: logistic regression, cart heuristic)."""
    _train("propensity", dataset, seed, max_examples, build_features, promote, horizon)


@app.command("next-action")
@cli_errors
def next_action(
    dataset: DatasetOption = "demo",
    seed: SeedOption = None,
    max_examples: MaxExamplesOption = 200_000,
    build_features: BuildOption = False,
    promote: PromoteOption = False,
) -> None:
    """PyTorch GRU next action / exit on next_action_v1 (baselines: last-action repeat, first-order Markov)."""
    _train("next-action", dataset, seed, max_examples, build_features, promote)


@app.command("next-item")
@cli_errors
def next_item(
    dataset: DatasetOption = "demo",
    seed: SeedOption = None,
    max_examples: MaxExamplesOption = 200_000,
    build_features: BuildOption = False,
    promote: PromoteOption = False,
) -> None:
    """PyTorch GRU4Rec-style next item on next_item_v1, top-k in the ONNX graph (baselines: popularity,
    item-to-item co-visitation)."""
    _train("next-item", dataset, seed, max_examples, build_features, promote)
