"""Every error Journey raises on purpose, each carrying the HTTP status and CLI exit code it maps to.

    JourneyError                      500 / exit 1   something went wrong that the caller cannot fix
    ├── InvalidInputError             422 / exit 2   the caller's input is wrong; names the field and value
    │   ├── BadEventError                            a canonical event failed validation (row + reason)
    │   └── ConfigError                              a YAML config file is wrong; names the file
    ├── NotFoundError                 404 / exit 2   a named object (dataset, model, user) does not exist
    ├── ConflictError                 409 / exit 2   the operation would overwrite something that exists
    └── ServiceUnavailableError       503 / exit 1   a store or server is unreachable

The CLI and the HTTP layer convert these in one place each; library code raises them and never prints.
"""

from __future__ import annotations

from typing import ClassVar


class JourneyError(Exception):
    """Base class: a failure with a message meant for the person who ran the command or sent the request."""

    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1


class InvalidInputError(JourneyError):
    """The input is wrong; `field` and `value` say where, so the user can fix it without reading code."""

    http_status = 422
    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class BadEventError(InvalidInputError):
    """A canonical event failed validation; raised for the first bad row in strict loads."""

    def __init__(self, *, row: int, field: str, value: object, reason: str) -> None:
        super().__init__(f"row {row}: {reason} in field {field!r} (value {value!r})", field=field, value=value)
        self.row = row
        self.reason = reason


class ConfigError(InvalidInputError):
    """A configuration file does not parse or does not match its schema."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"{path}: {message}", field=path)
        self.path = path


class NotFoundError(JourneyError):
    """A named object does not exist."""

    http_status = 404
    exit_code = 2


class ConflictError(JourneyError):
    """The operation would replace or duplicate an existing object."""

    http_status = 409
    exit_code = 2


class ServiceUnavailableError(JourneyError):
    """An external service (Redis, PostgreSQL, a model server) cannot be reached."""

    http_status = 503
    exit_code = 1
