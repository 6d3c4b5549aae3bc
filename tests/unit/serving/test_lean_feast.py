"""The lean Feast import: Feast usable, torch never imported by it, typeguard left as it was."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from serving import lean_feast


def _run(code: str) -> str:
    """In a fresh interpreter: what Feast imports depends on what the process imported before."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_feast_loads_feast_without_importing_torch() -> None:
    out = _run(
        """
        import sys
        from serving.lean_feast import import_feast
        seconds = import_feast()
        from feast import FeatureStore
        from feast.infra.online_stores.redis import RedisOnlineStore
        print(seconds > 0, "torch" in sys.modules, FeatureStore.__name__)
        """
    )
    assert out == "True False FeatureStore"


def test_import_feast_restores_typeguard_and_leaves_torch_importable() -> None:
    out = _run(
        """
        import typeguard
        original = typeguard.typechecked
        from serving.lean_feast import import_feast
        import_feast()
        import torch
        print(typeguard.typechecked is original, torch.__name__)
        """
    )
    assert out == "True torch"


def test_import_feast_is_a_no_op_once_feast_is_imported() -> None:
    import feast  # noqa: F401  (this test process imports Feast the normal way)

    assert lean_feast.import_feast() == 0.0
