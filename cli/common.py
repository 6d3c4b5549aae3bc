"""What every command shares: consoles, settings/logging start-up and the one place errors become exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from journey.errors import JourneyError
from journey.logs import configure_logging
from journey.settings import Settings, get_settings

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def start() -> Settings:
    """Read settings and configure logging once per command (never on import)."""
    settings = get_settings()
    configure_logging(settings)
    return settings


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn Journey errors into a one-line message and their exit code (2 for bad input), not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except JourneyError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=exc.exit_code) from exc

    return wrapper
