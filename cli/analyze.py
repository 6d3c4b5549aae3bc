"""`journey analyze`: journey mapping of a stored dataset, as a report, a chain for serving and profile features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import cli_errors, console, start
from journey.errors import InvalidInputError

if TYPE_CHECKING:
    from training.analysis.run import AnalysisResult

DatasetOption = Annotated[str, typer.Option("--dataset", "-d", help="Canonical event dataset to analyse.")]
SeedOption = Annotated[int | None, typer.Option(help="Seed of the segment clustering (default: JOURNEY_SEED).")]
TopOption = Annotated[int, typer.Option(help="Entry categories analysed on their own (the commonest; >= 0).")]
KMinOption = Annotated[int, typer.Option(help="Fewest user segments tried (k-means, chosen by silhouette; >= 2).")]
KMaxOption = Annotated[int, typer.Option(help="Most user segments tried.")]
FeaturesOption = Annotated[
    bool,
    typer.Option(
        "--features/--no-features",
        help="Write the user_profile features to the offline and online store (runs feast apply when needed).",
    ),
]


def _print_result(result: AnalysisResult) -> None:
    analysis = result.analysis
    overall = analysis.overall
    conversion = overall.conversion()
    table = Table("stage", "sessions reaching", "share", "P(purchase later)", title=f"journey of {analysis.dataset!r}")
    for stage, reached, share in zip(
        conversion["purchase_probability"], overall.funnel.reached, overall.funnel.shares(), strict=True
    ):
        table.add_row(stage, f"{reached:,}", f"{share:.1%}", f"{conversion['purchase_probability'][stage]:.4f}")
    console.print(table)
    profiles = analysis.profiles
    silhouette = "—" if profiles.silhouette is None else f"{profiles.silhouette:.3f}"
    names = ", ".join(f"{s.segment_id}: {s.name} ({s.users:,})" for s in profiles.segments)
    console.print(
        f"{overall.events:,} events, {overall.sessions:,} sessions; k = {profiles.k} (silhouette {silhouette}): {names}"
    )
    console.print(
        f"segments clustered on {', '.join(profiles.clustered_on)} ({profiles.basis}); purchases, spend and "
        "conversion are described per segment, not clustered on"
    )
    delays = analysis.delays
    if delays is not None and delays.purchases:
        counts = delays.summary()["from_last_view"]
        shares = ", ".join(f"{bucket} {n / delays.purchases:.0%}" for bucket, n in counts.items())
        console.print(f"{delays.purchases:,} purchases, after the last view of their item: {shares}")
    for note in analysis.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"report written to [bold]{result.report}[/] (and {result.html.name}); seconds {result.seconds}")
    console.print(f"journey chain for serving written to [bold]{result.chain}[/]")
    if result.features is not None:
        console.print(
            f"user_profile: offline [bold]{result.features['offline']}[/], "
            f"{result.features['online_rows']:,} rows online"
        )


@cli_errors
def analyze(
    dataset: DatasetOption = "demo",
    seed: SeedOption = None,
    top_categories: TopOption = 5,
    k_min: KMinOption = 2,
    k_max: KMaxOption = 6,
    features: FeaturesOption = True,
) -> None:
    """Stages, Markov transitions, funnels, time to convert and user segments: report, chain, profile features."""
    from training.analysis.run import check_k_range, run_analysis

    settings = start()
    check_k_range((k_min, k_max))
    if top_categories < 0:
        raise InvalidInputError(
            f"--top-categories must be >= 0, got {top_categories}", field="--top-categories", value=top_categories
        )
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None)
        result = run_analysis(
            dataset,
            settings,
            seed=seed,
            top=top_categories,
            k_range=(k_min, k_max),
            write_features=features,
            progress=lambda step: bar.update(task, description=step),
        )
    _print_result(result)
