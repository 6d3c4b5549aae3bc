"""`journey evaluate`: models under standard published protocols, so their figures compare with papers.

    journey evaluate next-item --dataset D --protocol srgnn|session-split [--kind K ...] [--seed N]

Prints P@20 and MRR@20 with 95% intervals for every next-item kind and baseline, each kind against the best
baseline, and where report.md / report.json went (reports/evaluate/<dataset>/<protocol>/).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cli.common import cli_errors, console, start

if TYPE_CHECKING:
    from training.evaluate_protocol import ProtocolResult

app = typer.Typer(help="Evaluate models under standard published protocols.", no_args_is_help=True)


def _print(result: ProtocolResult) -> None:
    table = Table("kind", "baseline", "P@20 [95%]", "MRR@20 [95%]", "fit s", title=result.split["method"])
    for f in result.kinds:
        cells = [f"{f.metrics[m]:.4f} [{f.ci95[m][0]:.4f}, {f.ci95[m][1]:.4f}]" for m in ("P@20", "MRR@20")]
        table.add_row(f.kind, "yes" if f.baseline else "", *cells, f"{f.seconds['fit']:.1f}")
    console.print(table)
    for kind, metrics in result.versus_best_baseline.items():
        for metric, v in metrics.items():
            console.print(
                f"{kind} - {v['best_baseline']} ({metric}): {v['difference']:+.4f} "
                f"[{v['ci95_low']:+.4f}, {v['ci95_high']:+.4f}] {v['verdict']}",
                highlight=False,
            )
    console.print(f"prefixes: {result.split['prefixes']}; report written to [bold]{result.paths['markdown']}[/]")


@app.command("next-item")
@cli_errors
def next_item(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Canonical event dataset to evaluate on.")],
    protocol: Annotated[
        str,
        typer.Option(help="srgnn (SR-GNN's preprocessing, test = the last 7 days) or session-split (random)."),
    ] = "srgnn",
    kind: Annotated[
        list[str] | None, typer.Option("--kind", "-k", help="Only this next-item kind (repeatable; default: all).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for fitting and splitting (default: JOURNEY_SEED).")] = None,
) -> None:
    """P@20 and MRR@20 of every next-item kind and baseline under a published protocol, with 95% intervals."""
    from training.evaluate_protocol import run_protocol

    settings = start()
    with console.status(f"{protocol}: preparing {dataset!r}, fitting and scoring every kind"):
        result = run_protocol(dataset, protocol, settings, kinds=kind, seed=seed)
    _print(result)
