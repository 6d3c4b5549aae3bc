"""`journey data`: create, import, check and describe canonical event datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import cli_errors, console, start
from journey.datasets import (
    DatasetStore,
    Manifest,
    WriteMode,
    generate_to_store,
    import_to_store,
    resolve_format,
)
from journey.datasets.importer import import_events
from journey.errors import InvalidInputError

app = typer.Typer(
    help="Event datasets: generate synthetic journeys, import public logs, validate, describe.",
    no_args_is_help=True,
)

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Dataset name under JOURNEY_DATA_DIR/datasets.")]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        help="retailrocket | rees46 | taobao, or a YAML mapping file for any other log (journey/datasets/README.md).",
    ),
]
SourceArg = Annotated[Path, typer.Argument(help="CSV (optionally .gz) or Parquet file, unchanged from the source.")]


def _mode(replace: bool, append: bool) -> WriteMode:
    if replace and append:
        raise InvalidInputError("--replace and --append exclude each other", field="--append", value=True)
    return WriteMode.REPLACE if replace else WriteMode.APPEND if append else WriteMode.ERROR


def _show_manifest(manifest: Manifest, where: Path) -> None:
    data = manifest.data
    table = Table(title=f"dataset {data['dataset']}", show_header=False)
    for key in ("rows", "users", "items", "sessions", "rejected_rows", "files"):
        table.add_row(key, f"{data[key]:,}")
    table.add_row("time range", f"{data['time_range']['start']} .. {data['time_range']['end']}")
    table.add_row("events by type", json.dumps(data["events_by_type"]))
    table.add_row("rejects by reason", json.dumps(data["rejects_by_reason"]) or "{}")
    console.print(table)
    console.print(f"written to [bold]{where}[/] (manifest: {where / 'manifest.json'})")


@app.command()
@cli_errors
def generate(
    dataset: DatasetOpt = "synthetic",
    config: Annotated[Path | None, typer.Option(help="YAML generator config (see synthetic_default.yaml).")] = None,
    events: Annotated[int | None, typer.Option(min=1, help="Scale the user count to about this many events.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: from config / JOURNEY_SEED).")] = None,
    replace: Annotated[bool, typer.Option(help="Replace the dataset if it exists.")] = False,
    retailrocket_csv: Annotated[
        Path | None,
        typer.Option(help="Also write the events as a RetailRocket-format CSV (for import benchmarks)."),
    ] = None,
) -> None:
    """Generate synthetic shopper journeys with known ground truth (stages, segments, bots)."""
    from journey.datasets.synthetic import SyntheticConfig, write_retailrocket_csv

    settings = start()
    cfg = SyntheticConfig.from_yaml(config) if config else SyntheticConfig(seed=settings.seed)
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    if events is not None:
        cfg = cfg.scaled_to(events)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("generating events", total=None)
        manifest = generate_to_store(
            cfg,
            dataset,
            settings,
            mode=_mode(replace, False),
            progress=lambda n: bar.update(task, completed=n),
        )
    store = DatasetStore(settings.events_dir)
    _show_manifest(manifest, store.path(dataset))
    if retailrocket_csv:
        path = write_retailrocket_csv(store.events(dataset), retailrocket_csv)
        console.print(f"RetailRocket-format CSV written to [bold]{path}[/]")


def _import_progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


@app.command("import")
@cli_errors
def import_(
    source: SourceArg,
    fmt: FormatOpt,
    dataset: DatasetOpt,
    strict: Annotated[bool, typer.Option(help="Fail (exit 2) on the first bad row, naming field and value.")] = False,
    replace: Annotated[bool, typer.Option(help="Replace the dataset if it exists.")] = False,
    append: Annotated[
        bool,
        typer.Option(help="Add to an existing dataset; events whose id is stored already are skipped and counted."),
    ] = False,
) -> None:
    """Import a public event log: parse, validate, sessionise, store as date-partitioned Parquet.

    Exit 2, storing nothing, when a mapped column is missing or every row is rejected (the reasons summarised).
    """
    settings = start()
    source_format = resolve_format(fmt)
    with _import_progress() as bar:
        task = bar.add_task("reading", total=None)
        result, manifest = import_to_store(
            source,
            source_format,
            dataset,
            settings,
            mode=_mode(replace, append),
            strict=strict,
            progress=lambda step: bar.update(task, description=step),
        )
    store = DatasetStore(settings.events_dir)
    if result.anonymous_rows:
        console.print(
            f"{result.anonymous_rows:,} rows without a user id took their session's "
            f"(anonymous_users: {result.anonymous_users}, recorded in the manifest)"
        )
    if result.rejects.num_rows:
        console.print(
            f"[yellow]{result.rows_rejected:,} of {result.rows_in:,} rows rejected[/] "
            f"{json.dumps(result.counts_by_reason())}; details in {store.path(dataset) / 'rejects.parquet'}"
        )
    duplicates = int(manifest.data["sources"][-1].get("rows_duplicate", 0)) if manifest is not None else 0
    if duplicates:
        console.print(f"{duplicates:,} events already stored (same event_id): skipped, nothing changed for them")
    if manifest is not None:
        _show_manifest(manifest, store.path(dataset))


@app.command()
@cli_errors
def validate(
    source: SourceArg,
    fmt: FormatOpt,
    show: Annotated[int, typer.Option(min=0, help="How many bad rows to list.")] = 20,
) -> None:
    """Check a source file without storing anything; exit 2 if any row is bad."""
    settings = start()
    with _import_progress() as bar:
        task = bar.add_task("reading", total=None)
        result = import_events(
            source,
            resolve_format(fmt),
            session_timeout_s=settings.session_timeout_s,
            progress=lambda step: bar.update(task, description=step),
        )
    console.print(
        f"{result.rows_in:,} rows read, {result.events.num_rows:,} valid, "
        f"{result.rows_rejected:,} rejected {json.dumps(result.counts_by_reason())}"
    )
    if result.rejects.num_rows:
        table = Table("row", "field", "value", "reason", title=f"first {show} problems")
        for row in result.rejects.slice(0, show).to_pylist():
            table.add_row(str(row["row"]), row["field"], row["value"][:60], row["reason"])
        console.print(table)
        raise typer.Exit(code=2)


@app.command()
@cli_errors
def stats(dataset: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """Describe a stored dataset from its manifest."""
    settings = start()
    store = DatasetStore(settings.events_dir)
    _show_manifest(store.manifest(dataset), store.path(dataset))


@app.command("list")
@cli_errors
def list_() -> None:
    """List stored datasets."""
    settings = start()
    store = DatasetStore(settings.events_dir)
    names = store.names()
    for name in names:
        m = store.manifest(name).data
        console.print(f"{name}\t{m['rows']:,} events\t{m['time_range']['start']} .. {m['time_range']['end']}")
    if not names:
        console.print(f"no datasets under {store.root}")
