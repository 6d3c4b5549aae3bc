"""The bytes of each version: checked on the way in, stored in BentoML's model store, re-hashed on the way out.

The rows live in SQL, the bytes in BentoML's model store (`<bentoml_home>/models/<name>/<tag version>/model.onnx`).
The SHA-256 in the row is the trust anchor: `register` refuses a file whose hash differs from what the exporter
computed (`staged_artifact`), and `ArtifactStore.verified_path` re-hashes the stored copy before serving may load it,
so a file swapped on disk is refused at both ends. Promotions and route changes re-hash too: a version serving could
not load never gets traffic.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final

from journey.errors import InvalidInputError, JourneyError, NotFoundError
from journey.registry.errors import TamperedArtifactError
from journey.registry.models import ModelVersion
from journey.registry.orm import ModelVersionRow
from journey.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from bentoml._internal.models.model import ModelStore

# One logger for the whole package: the registry's log lines keep the name they have always had.
log = logging.getLogger("journey.registry")

ARTIFACT_FILENAME: Final = "model.onnx"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ArtifactStore:
    """BentoML's model store under one directory (`<bentoml_home>/models`), holding one ONNX file per version.

    BentoML is imported inside the methods, on first use (see `_bentoml_models`): most registry calls never need it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def model_store(self) -> ModelStore:
        """A store on this directory, passed explicitly: BentoML's own container reads BENTOML_HOME once per
        process, which would send every test (and every profile) to the same directory."""
        _bentoml_models()
        from bentoml._internal.models.model import ModelStore

        self.directory.mkdir(parents=True, exist_ok=True)
        return ModelStore(self.directory)

    def save(self, row: ModelVersionRow, staged: Path) -> str:
        """Save the checked copy into BentoML's model store under the row's tag; the tag's version carries ours."""
        models = _bentoml_models()
        from bentoml.exceptions import BentoMLException

        labels = {"framework": row.framework, "feature_service": row.feature_service, "version": str(row.version)}
        # The registry row is the record (metrics and all); BentoML's metadata only has to identify the bytes, and it
        # refuses None, which JSON metrics may hold.
        metadata = {"onnx_sha256": row.onnx_sha256, "registry_version": row.version, "created_by": row.created_by}
        try:
            with models.create(
                row.bento_tag, labels=labels, metadata=metadata, _model_store=self.model_store()
            ) as model:
                shutil.copyfile(staged, model.path_of(ARTIFACT_FILENAME))
        except (BentoMLException, OSError, ValueError) as exc:
            raise JourneyError(f"could not save {row.bento_tag} in the BentoML store {self.directory}: {exc}") from exc
        return row.bento_tag

    def remove(self, tag: str) -> None:
        """Best effort: a model saved for a registration that then failed must not stay behind as an orphan."""
        store = self.model_store()
        from bentoml.exceptions import BentoMLException

        try:
            store.delete(tag)
        except (BentoMLException, OSError) as exc:
            log.warning("could not remove an orphaned BentoML model", extra={"bento_tag": tag, "error": str(exc)})

    def verified_path(self, mv: ModelVersion) -> Path:
        """The version's ONNX file in the store, after checking it still has the registered SHA-256.

        A file changed (or removed) in the store raises `TamperedArtifactError`; a model missing from the store
        altogether (usually another `JOURNEY_DATA_DIR`) raises `NotFoundError`.
        """
        store = self.model_store()
        from bentoml.exceptions import NotFound

        try:
            model = store.get(mv.bento_tag)
        except NotFound as exc:
            raise NotFoundError(
                f"{mv.name} version {mv.version}: BentoML model {mv.bento_tag} is not in the store {self.directory}"
            ) from exc
        path = Path(model.path_of(ARTIFACT_FILENAME))
        actual = sha256_of(path) if path.is_file() else "missing"
        if actual != mv.onnx_sha256:
            raise TamperedArtifactError(
                f"{mv.name} version {mv.version}: {path} has SHA-256 {actual}, registered {mv.onnx_sha256}; "
                "the stored model was modified and will not be served",
                path=path,
                expected=mv.onnx_sha256,
                actual=actual,
            )
        return path


def _bentoml_models() -> ModuleType:
    """`bentoml.models`, imported on first use (BentoML is slow to import and most registry calls never need it).

    Two process-wide adjustments, both overridable: usage tracking is off unless BENTOML_DO_NOT_TRACK says
    otherwise (a registry must not post events to bentoml.com on every save), and BentoML 1.4.39's import-time
    deprecation warning from pathspec (`GitWildMatchPattern`), which is not ours to fix, is silenced for the import.
    """
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*GitWildMatchPattern", category=DeprecationWarning)
        import bentoml.models
    return bentoml.models


# ------------------------------------------------------------------------------------------------------- the way in


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def staged_artifact(source: Path, tmp: Path, expected_sha256: str) -> tuple[Path, str]:
    """Copy `source` aside, then hash and load the copy: what was checked is what gets stored, even if the
    original changes in between. Returns the copy and its SHA-256."""
    expected = expected_sha256.strip().lower()
    if not _SHA256.match(expected):
        raise InvalidInputError(
            f"expected_sha256 must be 64 hex digits, got {expected_sha256!r}",
            field="onnx_sha256",
            value=expected_sha256,
        )
    if not source.is_file():
        raise InvalidInputError(f"ONNX file {source} does not exist", field="onnx_path", value=str(source))
    staged = tmp / ARTIFACT_FILENAME
    shutil.copyfile(source, staged)
    actual = sha256_of(staged)
    if actual != expected:
        raise TamperedArtifactError(
            f"{source} has SHA-256 {actual} but the exporter wrote {expected}: the file changed after export; "
            "nothing was registered",
            path=source,
            expected=expected,
            actual=actual,
        )
    _check_onnx(staged, source)
    return staged, actual


def _check_onnx(path: Path, shown_as: Path) -> None:
    """ONNX must parse and pass the checker, and hold its weights inline: the hash covers one file only."""
    import onnx  # imported on first registration only: serving and the read paths never need it
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
        if any(uses_external_data(tensor) for tensor in model.graph.initializer):
            raise InvalidInputError(
                f"{shown_as} keeps weights in a side file; export with external data off so one file is the model",
                field="onnx_path",
                value=str(shown_as),
            )
        onnx.checker.check_model(str(path))  # by path: the checker refuses in-memory models over 2 GB
    except (DecodeError, onnx.checker.ValidationError, ValueError) as exc:
        reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise InvalidInputError(
            f"{shown_as} is not a loadable ONNX model ({reason}); nothing was registered",
            field="onnx_path",
            value=str(shown_as),
        ) from exc


def git_commit() -> str | None:
    """The checkout's commit (best effort: None outside a git repository or without git)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None
