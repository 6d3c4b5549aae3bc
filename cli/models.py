"""`journey models`: list, inspect, promote, archive and audit registered model versions.

Every command names the registry it talks to on stderr (database URL, password masked), so stdout stays data:
`journey models show purchase_propensity production | jq .model.metrics` works. `promote` enforces the promotion gate
stored with each version (`training.promotion`): a version that did not beat its best baseline is refused unless
forced with a reason, which the audit log keeps.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from cli.common import cli_errors, console, err_console, start
from journey.errors import JourneyError, NotFoundError

if TYPE_CHECKING:
    from journey.registry import Registry

app = typer.Typer(help="Model registry: list, show, promote, archive, audit.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Model name, e.g. purchase_propensity.")]
VersionArg = Annotated[str, typer.Argument(help="Version number, 'latest' or 'production'.")]
ActorOpt = Annotated[str | None, typer.Option(help="Who makes the change, for the audit log (default: OS user).")]
ForceOpt = Annotated[
    bool, typer.Option(help="Go ahead although the version failed its promotion gate (needs --reason; audited).")
]
ReasonOpt = Annotated[str | None, typer.Option(help="Why --force overrides the gate (recorded in the audit log).")]


def os_user() -> str:
    """The login name, or "unknown" where there is none (containers often run as a uid without a passwd entry)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


@contextmanager
def _registry() -> Iterator[Registry]:
    from journey.registry import Registry

    with Registry(start()) as registry:
        err_console.print(f"registry: {registry.location}", highlight=False, soft_wrap=True)
        yield registry


@app.command("list")
@cli_errors
def list_(
    name: Annotated[str | None, typer.Option(help="Only versions of this model.")] = None,
    stage: Annotated[str | None, typer.Option(help="Only this stage: staging, production or archived.")] = None,
) -> None:
    """Registered versions, by name and number."""
    with _registry() as registry:
        versions = registry.list(name=name, stage=stage)
    # Fits 80 columns: the feature service, hashes and metrics are one `show` away.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", overflow="fold")
    for column in ("version", "stage", "framework", "created (UTC)"):
        table.add_column(column, no_wrap=True)
    table.add_column("by", overflow="fold")
    for mv in versions:
        created = mv.created_at.strftime("%Y-%m-%d %H:%M")
        table.add_row(mv.name, str(mv.version), mv.stage.value, mv.framework, created, mv.created_by)
    console.print(table)
    console.print(f"{len(versions)} version(s)")


@app.command()
@cli_errors
def show(name: NameArg, version: VersionArg) -> None:
    """One version as JSON: hashes, BentoML tag and ONNX file, metrics, data window, parameters, audit trail."""
    with _registry() as registry:
        mv = registry.get(name, version)
        trail = registry.audit(name=mv.name, version=mv.version)
        try:
            artifact = str(registry.artifact_path(mv))  # what serving loads, hash checked
        except JourneyError as exc:
            artifact = f"unusable: {exc}"
    document = {"model": mv.as_dict(), "artifact": artifact, "audit": [entry.as_dict() for entry in trail]}
    console.print(json.dumps(document, indent=2), highlight=False, soft_wrap=True, markup=False)


@app.command()
@cli_errors
def promote(
    name: NameArg, version: VersionArg, actor: ActorOpt = None, force: ForceOpt = False, reason: ReasonOpt = None
) -> None:
    """Make a version the production one; the version it replaces is archived. Promote an archived one to roll back.

    A version that failed its promotion gate (it did not beat the best baseline on the validation days) is refused
    (exit 2) unless --force --reason TEXT; the gate's verdict and the reason go into the audit log.
    """
    from journey.registry import Stage
    from training.promotion import check_override, promotion_note

    force_reason = check_override(force, reason, "--force")
    with _registry() as registry:
        previous = _production(registry, name)
        target = registry.get(name, version)
        note = None  # promoting the production version changes nothing: no gate to pass
        if target.stage != Stage.PRODUCTION:
            note = promotion_note(
                f"{name} v{target.version}",
                target.metrics,
                force=force,
                reason=force_reason,
                override=f"journey models promote {name} {target.version} --force --reason TEXT",
            )
        mv = registry.promote(name, target.version, actor or os_user(), note=note)
    if previous is not None and previous == mv.version:
        console.print(f"{name} version {mv.version} is already in production")
        return
    replaced = f"; version {previous} archived" if previous is not None else ""
    console.print(f"{name} version {mv.version} is now in production{replaced}")


@app.command()
@cli_errors
def archive(name: NameArg, version: VersionArg, actor: ActorOpt = None) -> None:
    """Retire a version. Archiving the production version leaves the model without one (warned)."""
    with _registry() as registry:
        previous = _production(registry, name)
        mv = registry.archive(name, version, actor or os_user())
    console.print(f"{name} version {mv.version} is archived")
    if previous == mv.version:
        err_console.print(f"[bold yellow]warning:[/] {name} has no production version now", highlight=False)


@app.command()
@cli_errors
def audit(
    name: Annotated[str | None, typer.Option(help="Only changes of this model.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest changes to show.")] = 50,
) -> None:
    """Who changed what, newest first."""
    with _registry() as registry:
        entries = registry.audit(name=name, limit=limit)
    table = Table("at (UTC)", "actor", "action", "model", "version", "change", "detail")
    for entry in entries:
        change = f"{_stage(entry.before)} -> {_stage(entry.after)}"
        at = entry.at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(at, entry.actor, entry.action, entry.name, str(entry.version), change, entry.detail)
    console.print(table)


def _production(registry: Registry, name: str) -> int | None:
    """The production version before a change (only to word the message; the change itself is atomic)."""
    try:
        return registry.get(name, "production").version
    except NotFoundError:
        return None


def _stage(state: dict[str, object] | None) -> str:
    if state is None:
        return "-"
    return str(state.get("stage", ", ".join(f"{k}={v}" for k, v in state.items())))
