"""What the registry refuses, as kinds of Journey's own errors (`journey.errors`), so the CLI and the HTTP layer
map them to exit codes and statuses in their one place each:

    InvalidInputError   └── TamperedArtifactError       422 / exit 2   the bytes are not the ones registered
    NotFoundError       └── ModelVersionNotFoundError   404 / exit 2   no such model, or no such version of it
"""

from __future__ import annotations

from pathlib import Path

from journey.errors import InvalidInputError, NotFoundError
from journey.registry.models import VersionRef


class TamperedArtifactError(InvalidInputError):
    """The bytes are not the ones the exporter wrote (or the registry stored): refused, never served."""

    def __init__(self, message: str, *, path: Path, expected: str, actual: str) -> None:
        super().__init__(message, field="onnx_sha256", value=actual)
        self.path = path
        self.expected = expected
        self.actual = actual


class ModelVersionNotFoundError(NotFoundError):
    """A model name, or a version of it, that the registry does not hold."""

    def __init__(self, message: str, *, name: str, version: VersionRef | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.version = version
