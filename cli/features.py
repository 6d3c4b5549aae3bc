"""`journey features`: build batch features, apply the Feast repo, materialise, push events, read online; and the
environment with which Feast's own CLI sees the same stores (`env`)."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import cli_errors, console, start
from journey.errors import InvalidInputError
from journey.settings import Profile

app = typer.Typer(help="Feature store (Feast): build, apply, materialize, push, get.", no_args_is_help=True)


@app.command()
@cli_errors
def build(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Canonical event dataset to compute from.")] = "demo",
) -> None:
    """Compute daily user/item snapshots and the session history; write them to the profile's offline store."""
    from training.pipeline import build_offline

    settings = start()
    with console.status("computing features") as status:
        locations = build_offline(dataset, settings, progress=lambda step: status.update(step))
    for view, where in locations.items():
        console.print(f"{view}: written to [bold]{where}[/]")


@app.command("apply")
@cli_errors
def apply_() -> None:
    """Register the feature repo (entities, views, services) with Feast for the active profile."""
    from journey.stores.feature_store import apply

    settings = start()
    with console.status(f"feast apply ({settings.profile.value} profile, project {settings.feast_project})"):
        result = apply(settings)
    if result.diff.strip():
        console.print(result.diff.rstrip(), highlight=False)
    for kind, names in result.objects.items():
        console.print(f"{kind}: {', '.join(names)}")
    console.print(f"registered in project [bold]{result.project}[/] ({settings.profile.value} profile)")


@app.command("env")
@cli_errors
def env_() -> None:
    """Print `export` lines with which Feast's own CLI sees this profile's stores: eval "$(journey features env)".

    The output holds the connection details of the active settings (passwords included): for a shell, not a file.
    """
    from journey.stores.connections import feast_environment
    from journey.stores.feature_store import FEATURE_REPO, FEATURE_STORE_YAML, local_overrides

    settings = start()
    for name, value in feast_environment(settings).items():
        typer.echo(f"export {name}={shlex.quote(value)}")
    yaml_file = FEATURE_STORE_YAML[settings.profile].relative_to(FEATURE_REPO)
    if settings.profile is Profile.LOCAL:
        for key, value in local_overrides(settings).items():
            typer.echo(f"# note: Journey uses {key} {value}; {yaml_file} (Feast's CLI) keeps the checkout's")
    typer.echo(f"# then: cd {shlex.quote(str(FEATURE_REPO))} && feast -f {yaml_file} serve  (or apply, ui, ...)")


def _parse_time(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f"--end must be an ISO timestamp, got {value!r}", field="--end", value=value) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
@cli_errors
def materialize(
    end: Annotated[str | None, typer.Option(help="Materialise up to this time (ISO 8601, default now).")] = None,
    view: Annotated[list[str] | None, typer.Option(help="Only these feature views (repeatable).")] = None,
) -> None:
    """Incremental, idempotent materialisation into the online store (safe to re-run after a crash)."""
    from journey.stores.feature_store import materialize as run

    settings = start()
    with console.status("materialising"):
        stats = run(settings, _parse_time(end), view)
    for name, info in stats.items():
        console.print(f"{name}: {json.dumps(info)}")
    console.print(f"online store updated ({settings.profile.value} profile)")


@app.command()
@cli_errors
def push(
    source: Annotated[Path, typer.Argument(help="JSON Lines file of canonical events, or - for stdin.")],
) -> None:
    """Push events to the session_activity push source (online + offline), reporting rejected ones."""
    from journey.stores.feature_store import open_store
    from journey.stores.push import push_records

    settings = start()
    text = sys.stdin.read() if str(source) == "-" else source.read_text(encoding="utf-8")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"line {number}: not JSON ({exc.msg})", field=f"line {number}", value=line[:80]
                ) from exc
    from journey.stores.offline import OfflineTables

    result = push_records(open_store(settings), OfflineTables(settings), records)
    console.print(
        f"accepted {result.accepted}, rejected {result.rejected}, sessions updated {result.sessions}, "
        f"visible after {result.push_seconds * 1000:.1f} ms"
    )
    for reject in result.rejects:
        console.print(f"  row {reject['row']}: {reject['reason']} in {reject['field']} ({reject['value']!r})")
    if result.rejected:
        raise typer.Exit(code=2)


def _entity(pair: str) -> tuple[str, Any]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise InvalidInputError(f"expected key=value, got {pair!r}", field="--entity", value=pair)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


@app.command()
@cli_errors
def get(
    service: Annotated[str, typer.Option(help="Feature service, e.g. purchase_propensity_v1.")],
    entity: Annotated[
        list[str],
        typer.Option(help="key=value, repeatable: user_id=1 item_id=2 candidate_item_id=2 candidate_price=9.5"),
    ],
) -> None:
    """Read one feature vector from the online store through a feature service."""
    from journey.stores.feature_store import feature_service, open_store

    settings = start()
    store = open_store(settings)
    row = dict(_entity(p) for p in entity)
    response = store.get_online_features(features=feature_service(store, service), entity_rows=[row]).to_dict()
    table = Table("feature", "value", title=f"{service} ({settings.profile.value})")
    for name, values in response.items():
        table.add_row(name, str(values[0]))
    console.print(table)
