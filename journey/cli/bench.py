"""`journey bench`: run the benchmark suite (the same as `make bench`)."""

from __future__ import annotations

from typing import Annotated

import typer

from journey.cli.common import cli_errors, console, start

app = typer.Typer(help="Benchmarks: side-by-side latency/throughput with same-run baselines.", no_args_is_help=True)


@app.command()
@cli_errors
def run(
    case: Annotated[list[str] | None, typer.Option(help="Only these cases (repeatable).")] = None,
    quick: Annotated[bool, typer.Option(help="Smaller inputs, fewer repetitions (smoke run).")] = False,
) -> None:
    """Run benchmark cases and write reports/bench.json and reports/bench.md."""
    from benchmarks.cases import CASES
    from benchmarks.harness import run_cases

    settings = start()
    known = {c.name for c in CASES}
    unknown = sorted(set(case or []) - known)
    if unknown:
        raise typer.BadParameter(f"unknown case(s) {unknown}; known: {sorted(known)}", param_hint="--case")
    selected = [c for c in CASES if not case or c.name in case]
    run_cases(selected, settings.reports_dir, quick=quick, echo=console.print)
    console.print(f"report written to [bold]{settings.reports_dir / 'bench.md'}[/] and bench.json")
