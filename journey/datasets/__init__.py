"""Event datasets: source formats, the importer, the synthetic generator and the on-disk store.

`import_to_store` and `generate_to_store` are the two ways a dataset comes to exist; the CLI and tests call them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from journey.datasets.formats import BUILTIN_FORMATS, SourceFormat
from journey.datasets.importer import ImportResult, import_events, nothing_imported
from journey.datasets.store import DatasetStore, Manifest, WriteMode
from journey.datasets.synthetic import SyntheticConfig, generate
from journey.errors import InvalidInputError
from journey.settings import Settings

__all__ = [
    "BUILTIN_FORMATS",
    "DatasetStore",
    "ImportResult",
    "Manifest",
    "SourceFormat",
    "WriteMode",
    "generate_to_store",
    "import_to_store",
    "resolve_format",
]


def resolve_format(spec: str) -> SourceFormat:
    """A built-in format name, or the path of a YAML column mapping for any other log."""
    if spec in BUILTIN_FORMATS:
        return BUILTIN_FORMATS[spec]
    path = Path(spec)
    if path.suffix in {".yaml", ".yml"}:
        return SourceFormat.from_yaml(path)
    raise InvalidInputError(
        f"unknown format {spec!r}: use one of {sorted(BUILTIN_FORMATS)} or a mapping .yaml file",
        field="format",
        value=spec,
    )


def import_to_store(
    source: Path,
    fmt: SourceFormat,
    dataset: str,
    settings: Settings,
    *,
    mode: WriteMode = WriteMode.ERROR,
    strict: bool = False,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[ImportResult, Manifest | None]:
    """Import a source file (and its side files) into a named dataset.

    Nothing is written when the import holds no valid event (every row rejected, or no rows): that is refused with
    the reasons summarised (InvalidInputError, exit 2). Strict: the first bad row aborts before anything is written.
    """
    store = DatasetStore(settings.events_dir)
    store.check_writable(dataset, mode)  # fail before the (possibly long) import
    result = import_events(source, fmt, session_timeout_s=settings.session_timeout_s, now=now, progress=progress)
    if strict and (error := result.first_error()) is not None:
        raise error
    if result.events.num_rows == 0:
        raise nothing_imported(result)
    manifest = store.write(
        dataset,
        result.events,
        rejects=result.rejects,
        mode=mode,
        source={
            "kind": "import",
            "path": str(source),
            "format": fmt.name,
            "rows_in": result.rows_in,
            **result.provenance(),
        },
    )
    return result, manifest


def generate_to_store(
    config: SyntheticConfig,
    dataset: str,
    settings: Settings,
    *,
    mode: WriteMode = WriteMode.ERROR,
    progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Generate a synthetic dataset and store it with its ground truth (sessions, stages, users, items)."""
    if not isinstance(config, SyntheticConfig):
        raise TypeError("config must be a SyntheticConfig")
    store = DatasetStore(settings.events_dir)
    store.check_writable(dataset, mode)
    data = generate(config, progress=progress)
    truth = {
        "sessions": data.sessions,
        "users": data.users,
        "items": data.items,
        "event_stages": pa.table({"event_id": data.events["event_id"], "stage": data.event_stage}),
    }
    return store.write(
        dataset,
        data.events,
        mode=mode,
        extra_tables=truth,
        source={
            "kind": "synthetic",
            "config": config.model_dump(mode="json"),
            "rows_in": data.events.num_rows,
        },
    )
