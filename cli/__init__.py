"""`journey`: one command group per kind of user (data, features, train, evaluate, models, route, ab, bench), plus
`analyze`, and the two commands an ML engineer types most: `deploy` and `rollback`.

The CLI is the composition root: commands import `training`, `serving` and `benchmarks` lazily, inside the
command, so `journey --help` stays fast and the core package never depends on them at import time.
"""

from __future__ import annotations

import typer

from cli import analyze, bench, data, evaluate, features, models, route, train

app = typer.Typer(
    name="journey",
    help="Journey platform: events -> Feast features -> models -> BentoML serving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(train.app, name="train")
app.add_typer(evaluate.app, name="evaluate")
app.add_typer(models.app, name="models")
app.add_typer(route.app, name="route")
app.add_typer(route.ab_app, name="ab")
app.command("deploy")(route.deploy)
app.command("rollback")(route.rollback)
app.add_typer(bench.app, name="bench")
app.command("analyze")(analyze.analyze)
