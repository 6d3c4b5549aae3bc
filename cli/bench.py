"""`journey bench`: the benchmark suite (as `make bench`) and the GPU benchmark of the production models."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import cli_errors, console, start

app = typer.Typer(help="Benchmarks: side-by-side latency/throughput with same-run baselines.", no_args_is_help=True)


@app.command()
@cli_errors
def run(
    case: Annotated[list[str] | None, typer.Option(help="Only these cases (repeatable).")] = None,
    quick: Annotated[bool, typer.Option(help="Smaller inputs, fewer repetitions (smoke run).")] = False,
) -> None:
    """Run benchmark cases and write reports/bench.json and reports/bench.md."""
    from benchmarks.cases import CASES
    from benchmarks.harness import failed, run_cases

    settings = start()
    known = {c.name for c in CASES}
    unknown = sorted(set(case or []) - known)
    if unknown:
        raise typer.BadParameter(f"unknown case(s) {unknown}; known: {sorted(known)}", param_hint="--case")
    selected = [c for c in CASES if not case or c.name in case]
    results = run_cases(selected, settings.reports_dir, quick=quick, echo=console.print)
    console.print(f"report written to [bold]{settings.reports_dir / 'bench.md'}[/] and bench.json")
    if broken := failed(results):
        console.print(f"[red]benchmark cases failed:[/] {', '.join(broken)} (see their rows and the log)")
        raise typer.Exit(1)


@app.command()
@cli_errors
def gpu(
    model: Annotated[
        list[str] | None,
        typer.Option(help="Models to measure (repeatable); default: every model with a production version."),
    ] = None,
    batches: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,64,256,1024,4096,8192",
    seconds: Annotated[float, typer.Option(min=0.05, help="Timed seconds per (model, provider, mode, batch).")] = 1.0,
) -> None:
    """ONNX Runtime CUDA vs CPU on the production models (benchmarks/gpu.py); on a host without a GPU the report
    says so and holds the CPU figures. Writes reports/gpu/{gpu|cpu-only}.{json,md}; the `auto` provider policy reads
    gpu.json's crossover batch sizes."""
    from benchmarks import gpu as gpu_bench
    from journey.registry import Registry

    settings = start()
    with Registry(settings) as registry:
        production = {mv.name: mv for mv in registry.list(stage="production")}
        names = model or sorted(production)
        unknown = [name for name in names if name not in production]
        if unknown or not names:
            raise typer.BadParameter(
                f"no production version of {unknown or 'any model'}; with one: {sorted(production)}",
                param_hint="--model",
            )
        paths = {name: registry.artifact_path(production[name]) for name in names}
    argv = [arg for name, path in paths.items() for arg in ("--model", f"{name}={path}")]
    argv += ["--batches", batches, "--seconds", str(seconds), "--out", str(settings.reports_dir / "gpu")]
    if gpu_bench.main(argv) != 0:
        raise typer.Exit(1)
