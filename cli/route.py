"""`journey deploy|rollback`, `journey route ...` and `journey ab report`: traffic splits for ML engineers.

    journey deploy purchase_propensity:3 --endpoint predict_purchase --weight 10    v3 takes 10%, the rest keep
                                                                                 their proportions
    journey route show [--endpoint E] [--json]      variants, versions, weights, shares, shadow, experiment
    journey route set --endpoint E --variant control=2:90 --variant candidate=3:10 [--shadow 4]
    journey route shadow purchase_propensity:4 --endpoint E     (or --off)
    journey route clear --endpoint E                the production version answers everything again
    journey route history [--endpoint E]            every change, for rollback
    journey rollback --endpoint E                   back to the route before the newest change
    journey ab report --experiment NAME             report.md / report.png / report.json under reports/ab/NAME/

Every change is validated and audited by the registry (`journey.registry`); bad input exits 2 naming the value.
`deploy` refuses a version that failed its promotion gate unless `--force --reason TEXT` (`training.promotion`).
The commands parse and apply through `journey.registry.routes_admin`, as the admin HTTP endpoints of the service do.
Like `journey models`, the registry in use is named on stderr, so stdout stays data (`route show --json | jq`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from cli.common import cli_errors, console, err_console, start
from cli.models import os_user
from journey.errors import InvalidInputError
from journey.registry import routes_admin

if TYPE_CHECKING:
    import pyarrow as pa

    from journey.registry import Registry, Route
    from journey.settings import Settings
    from training.experiments.ab_analysis import AbReport, WeightPeriod

app = typer.Typer(help="Traffic routes of the prediction endpoints: show, set, shadow, clear, history.")
ab_app = typer.Typer(help="A/B experiments: reports from the prediction log and the purchases.")

ENDPOINT_HELP = "Endpoint: predict_purchase, predict_next_action or recommend."
EndpointOpt = Annotated[str, typer.Option("--endpoint", "-e", help=ENDPOINT_HELP)]
ActorOpt = Annotated[str | None, typer.Option(help="Who makes the change, for the audit log (default: OS user).")]
ExperimentOpt = Annotated[
    str | None,
    typer.Option(help="Experiment name (default: the route's current one; a new name draws a new salt)."),
]


@contextmanager
def _registry() -> Iterator[Registry]:
    from journey.registry import Registry

    with Registry(start()) as registry:
        err_console.print(f"registry: {registry.location}", highlight=False, soft_wrap=True)
        yield registry


# ------------------------------------------------------------------------------------------------------- deploy


@cli_errors
def deploy(
    model_version: Annotated[str, typer.Argument(help="MODEL:VERSION, e.g. purchase_propensity:3 (or :latest).")],
    weight: Annotated[float, typer.Option(help="Percent of the endpoint's users for this version (0..100).")],
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", "-e", help=f"{ENDPOINT_HELP} Default: the model's endpoint.")
    ] = None,
    variant: Annotated[
        str | None, typer.Option(help="Variant name (default: the variant serving it already, else v<VERSION>).")
    ] = None,
    experiment: ExperimentOpt = None,
    salt: Annotated[str | None, typer.Option(help="Hash salt (default: kept within an experiment).")] = None,
    actor: ActorOpt = None,
    force: Annotated[
        bool, typer.Option(help="Deploy although the version failed its promotion gate (needs --reason; audited).")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why --force overrides the gate (audited).")] = None,
) -> None:
    """Give a model version WEIGHT percent of an endpoint's users; the other variants keep their relative weights.

    Only the users needed move: raising a variant from 10 to 20 moves 10% of users, all into it. A version that
    failed its promotion gate (it did not beat the best baseline on the validation days) is refused (exit 2) unless
    --force --reason TEXT; a weight of 0 gives it no users and needs neither.
    """
    from training.promotion import check_override

    force_reason = check_override(force, reason, "--force")
    with _registry() as registry:
        model_version, note = _gate_checked(registry, model_version, weight, force_reason)
        route = routes_admin.deploy(
            registry,
            model_version,
            weight,
            endpoint=endpoint,
            variant=variant,
            experiment=experiment,
            salt=salt,
            actor=actor or os_user(),
            note=note,
        )
        _print_route(registry, route)
    console.print(
        f"{route.endpoint}: revision {route.revision}; `journey rollback --endpoint {route.endpoint}` undoes it"
    )


def _gate_checked(
    registry: Registry, model_version: str, weight: float, force_reason: str | None
) -> tuple[str, str | None]:
    """MODEL:NUMBER of the version about to get users and the gate's word on it for the audit log;
    GateRefusedError when it failed its gate and is not forced. A weight of 0 is not checked."""
    from training.promotion import promotion_note

    if weight == 0:
        return model_version, None
    model, version = routes_admin.parse_model_version(model_version)
    target = registry.get(model, version)
    note = promotion_note(
        f"{model} v{target.version}",
        target.metrics,
        force=force_reason is not None,
        reason=force_reason,
        override=f"journey deploy {model}:{target.version} --weight {weight:g} --force --reason TEXT",
    )
    return f"{model}:{target.version}", note


@cli_errors
def rollback(endpoint: EndpointOpt, actor: ActorOpt = None) -> None:
    """Restore the route the newest change replaced (run again to go further back; the end is the default route)."""
    with _registry() as registry:
        route = routes_admin.rollback(registry, endpoint, actor=actor or os_user())
        _print_route(registry, route)
    console.print(f"{endpoint}: rolled back (revision {route.revision})")


# -------------------------------------------------------------------------------------------------------- route


@app.command()
@cli_errors
def show(
    endpoint: Annotated[str | None, typer.Option("--endpoint", "-e", help="Only this endpoint.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout instead of tables.")] = False,
) -> None:
    """The route of each endpoint (or one): variants, versions and their stages, weights, shares, shadow."""
    with _registry() as registry:
        routes = routes_admin.show(registry, endpoint)
        if as_json:
            document = [route.as_dict() for route in routes]
            console.print(json.dumps(document, indent=2), highlight=False, soft_wrap=True, markup=False)
            return
        for route in routes:
            _print_route(registry, route)


@app.command("set")
@cli_errors
def set_(
    endpoint: EndpointOpt,
    variants: Annotated[
        list[str],
        typer.Option(
            "--variant",
            "-v",
            help="NAME=[MODEL:]VERSION:WEIGHT, repeated, in the fixed order, e.g. control=2:90 candidate=3:10.",
        ),
    ],
    shadow: Annotated[
        str | None, typer.Option(help="Shadow version: [MODEL:]VERSION (scored, never returned).")
    ] = None,
    experiment: ExperimentOpt = None,
    salt: Annotated[str | None, typer.Option(help="Hash salt (default: kept within an experiment).")] = None,
    actor: ActorOpt = None,
) -> None:
    """Replace an endpoint's route with these variants (weights are relative: 90 and 10 split 90%/10%)."""
    with _registry() as registry:
        route = routes_admin.set_route(
            registry,
            endpoint,
            variants,
            actor=actor or os_user(),
            shadow=shadow,
            experiment=experiment,
            salt=salt,
        )
        _print_route(registry, route)
    console.print(f"{endpoint}: revision {route.revision}")


@app.command("shadow")
@cli_errors
def shadow_(
    endpoint: EndpointOpt,
    model_version: Annotated[
        str | None, typer.Argument(help="[MODEL:]VERSION to score in the shadow of every request.")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Remove the shadow.")] = False,
    experiment: ExperimentOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Score a version beside the live variants on every request (logged for the A/B report, never returned)."""
    if (model_version is None) == (not off):
        raise InvalidInputError("give either a [MODEL:]VERSION or --off", field="model_version", value=model_version)
    with _registry() as registry:
        route = routes_admin.set_shadow(
            registry, endpoint, model_version, actor=actor or os_user(), experiment=experiment
        )
        _print_route(registry, route)


@app.command()
@cli_errors
def clear(endpoint: EndpointOpt, actor: ActorOpt = None) -> None:
    """Remove an endpoint's route: its production version answers everything (variant `production`)."""
    with _registry() as registry:
        route = routes_admin.clear(registry, endpoint, actor=actor or os_user())
        _print_route(registry, route)


@app.command()
@cli_errors
def history(
    endpoint: Annotated[str | None, typer.Option("--endpoint", "-e", help="Only this endpoint.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest revisions to show.")] = 20,
) -> None:
    """Every route change, newest first: what `journey rollback` walks back through."""
    with _registry() as registry:
        revisions = registry.route_history(endpoint, limit=limit)
    table = Table(box=box.SIMPLE_HEAD)
    columns = ("rev", "at (UTC)", "actor", "action") if endpoint else ("endpoint", "rev", "at (UTC)", "actor", "action")
    for column in columns:
        table.add_column(column, no_wrap=column != "actor")
    table.add_column("split", overflow="fold", min_width=24)
    table.add_column("undo to", no_wrap=True)
    for r in revisions:
        split = _split(r.route) if r.route is not None else "default (production version)"
        back = {None: "-", 0: "default"}.get(r.previous_revision, str(r.previous_revision))
        cells = [str(r.revision), r.at.strftime("%m-%d %H:%M"), r.actor, r.action.value, split, back]
        table.add_row(*([] if endpoint else [r.endpoint]), *cells)
    console.print(table)


# ----------------------------------------------------------------------------------------------------------- ab


@ab_app.command()
@cli_errors
def report(
    experiment: Annotated[str, typer.Option(help="Experiment name (see `journey route show`).")],
    control: Annotated[str | None, typer.Option(help="Control variant (default: control/production/first).")] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="Purchases from this dataset instead of the /events log (event_log)."),
    ] = None,
    window_s: Annotated[
        float | None, typer.Option(min=1, help="Attribution window in seconds (default: settings, 24 h).")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="Only predictions from this UTC time.")] = None,
    until: Annotated[datetime | None, typer.Option(help="Only predictions before this UTC time.")] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option("--weight", help="NAME=WEIGHT, repeated: expected split (default: the route history)."),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Folder (default: <reports_dir>/ab/<experiment>).")] = None,
) -> None:
    """Conversion per variant with intervals, uplift and p-value vs control, sample ratio check, AUC of scores."""
    from journey.registry import Registry
    from training.experiments.ab_analysis import weights_from_history
    from training.experiments.ab_report import build_report

    settings = start()
    expected: dict[str, float] | list[WeightPeriod] | None = None
    if weights:
        expected = dict(routes_admin.parse_weight(text) for text in weights)
    else:
        with Registry(settings) as registry:
            expected = list(weights_from_history(registry.route_history(oldest_first=True), experiment)) or None
    events = _events(settings, dataset)
    result, paths = build_report(
        settings,
        experiment,
        events,
        weights=expected,
        control=control,
        window_s=window_s,
        since=_utc(since),
        until=_utc(until),
        output_dir=output,
    )
    _print_report(result, paths)


def _print_report(result: AbReport, paths: dict[str, Path]) -> None:
    """The summary table of `journey ab report`, the SRM warning, and where the files went."""
    table = Table(
        "variant", "users", "conversions", "rate [95% CI]", "vs control", "p-value", "AUC", "AUC vs control", "AUC p",
        box=box.SIMPLE,
    )  # fmt: skip
    for v in result.variants:
        rate = f"{v.rate:.2%} [{v.rate_ci[0]:.2%}, {v.rate_ci[1]:.2%}]"
        versus = "control" if v.control else (f"{v.difference * 100:+.2f} pp" if v.difference is not None else "n/a")
        p_value = "" if v.p_value is None else f"{v.p_value:.3g}" + (" *" if v.significant else "")
        auc = "n/a" if v.auc is None else f"{v.auc:.3f}"
        auc_versus = "" if v.control or v.auc_difference is None else f"{v.auc_difference:+.3f}"
        auc_p = "" if v.auc_p_value is None else f"{v.auc_p_value:.3g}" + (" *" if v.auc_significant else "")
        table.add_row(v.variant, f"{v.users:,}", f"{v.conversions:,}", rate, versus, p_value, auc, auc_versus, auc_p)
    console.print(table)
    if result.srm is not None and result.srm.mismatch:
        err_console.print(
            f"[bold red]sample ratio mismatch[/] (p = {result.srm.p_value:.3g}): do not trust these numbers",
            highlight=False,
        )
    for kind, path in paths.items():
        console.print(f"{kind}: {path}", highlight=False, soft_wrap=True)


# -------------------------------------------------------------------------------------------------- helpers


def _events(settings: Settings, dataset: str | None) -> pa.Table:
    """Canonical events with the purchases: a stored dataset, or the /events log of the offline store."""
    if dataset is not None:
        from journey.datasets.store import DatasetStore

        return DatasetStore(settings.events_dir).events(dataset)
    from journey.stores.offline import OfflineTables

    tables = OfflineTables(settings)
    return tables.read("event_log")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _split(route: Route) -> str:
    shares = route.shares()
    text = ", ".join(f"{v.name}=v{v.version} {shares[v.name]:.0%}" for v in route.variants)
    return text + (f"; shadow v{route.shadow_version}" if route.shadow_version else "")


def _print_route(registry: Registry, route: Route) -> None:
    """One endpoint's route as a table, with the current stage of each version (a route pins version numbers)."""
    stages = {mv.version: mv.stage.value for mv in registry.list(name=route.model)}
    if route.stored:
        title = (
            f"{route.endpoint} ({route.model}): experiment {route.experiment}, salt {route.salt}, "
            f"revision {route.revision} by {route.updated_by} at {route.updated_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    else:
        title = f"{route.endpoint} ({route.model}): no route set, the production version answers everything"
    console.print(title, highlight=False, soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("variant")
    for column in ("version", "stage", "weight", "share"):
        table.add_column(column, justify="left" if column == "stage" else "right", no_wrap=True)
    shares = route.shares()
    for v in route.variants:
        table.add_row(v.name, str(v.version), stages.get(v.version, "?"), f"{v.weight:g}", f"{shares[v.name]:.1%}")
    if route.shadow_version is not None:
        stage = stages.get(route.shadow_version, "?")
        table.add_row("(shadow)", str(route.shadow_version), stage, "-", "shadow")
    console.print(table)
    if not route.variants:
        err_console.print(f"[bold yellow]warning:[/] {route.model} has no production version: nothing to serve")
    for v in route.variants:
        if stages.get(v.version) == "archived":
            err_console.print(
                f"[bold yellow]warning:[/] variant {v.name} serves {route.model} v{v.version}, which is archived",
                highlight=False,
            )
