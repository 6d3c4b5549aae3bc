"""Import Feast for serving without the ~6 s of import-time work that a serving process never uses.

`import feast` (0.67) costs ~7.7 s on two slow cores; `python -X importtime` puts most of it in two places:
- typeguard's `@typechecked` on Feast's definition classes (`OnDemandFeatureView`, `FeatureView`, `DataSource`, ...):
  typeguard 4 re-parses and recompiles each decorated function's source at import, ~3 s in all. The checks guard
  users writing feature definitions; serving only rebuilds objects from the registry that `feast apply` checked.
- `feast/torch_wrapper.py` imports torch eagerly (~1.6 s); serving runs ONNX Runtime and never touches torch (a
  serving image need not even have it).
With both skipped the import takes ~1.5 s. Both skips are scoped to this one import: typeguard's decorator is
restored and torch stays importable afterwards. Processes that run `feast apply` (the CLI) import Feast normally.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

_SKIPPED_IMPORTS = ("torch",)
_DECORATOR = "typechecked"  # typeguard's, looked up when Feast's modules run `from typeguard import typechecked`


def _no_typecheck(target: Callable[..., Any] | None = None, **_: Any) -> Any:
    """typeguard's `typechecked` signature (bare or with keyword options), returning the target unchanged."""
    if target is None:
        return lambda func: func
    return target


@contextmanager
def _without_typeguard() -> Iterator[None]:
    try:
        typeguard = importlib.import_module("typeguard")
    except ImportError:  # Feast without typeguard: nothing to skip
        yield
        return
    original = getattr(typeguard, _DECORATOR)
    setattr(typeguard, _DECORATOR, _no_typecheck)
    try:
        yield
    finally:
        setattr(typeguard, _DECORATOR, original)


@contextmanager
def _blocked(modules: tuple[str, ...]) -> Iterator[None]:
    """`import <module>` raises ImportError meanwhile (a `None` entry in sys.modules), unless already imported."""
    blocked = [name for name in modules if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # the documented way to make an import fail
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def import_feast() -> float:
    """Import Feast's store, registry and online-store modules lean; returns the seconds it took (0 if done before)."""
    if "feast" in sys.modules:
        return 0.0
    began = time.perf_counter()
    with _without_typeguard(), _blocked(_SKIPPED_IMPORTS):
        importlib.import_module("feast")
    seconds = time.perf_counter() - began
    log.info("feast imported for serving", extra={"seconds": round(seconds, 2), "skipped": list(_SKIPPED_IMPORTS)})
    return seconds
