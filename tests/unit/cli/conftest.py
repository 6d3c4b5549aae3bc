"""What every CLI test needs around CliRunner."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`start()` points the root handler at the runner's stderr, closed after each invoke; logs written after the
    command (fixtures, later library calls) must not go to it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
