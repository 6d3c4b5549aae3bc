"""Fixtures of the infra tests: promtool (Debian's `prometheus` package, `make install`).

promtool missing skips the tests that need it on a developer's machine and fails them under REQUIRE_SERVICES=1 (CI),
like a missing service (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        reason = "promtool not found (Debian's prometheus package: `make install` as root installs it)"
        if os.environ.get("REQUIRE_SERVICES", "") == "1":
            pytest.fail(f"required tool unavailable: {reason}")
        pytest.skip(reason)
    return binary
