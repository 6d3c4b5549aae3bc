"""Structured logging for every Journey process, configured by entry points (never on import)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from journey.settings import Settings

# Attributes every LogRecord has; anything else was passed through `extra=` and belongs in the structured output.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


# Feast's registry refreshes and Alembic's plugin loading log several INFO lines per command that say nothing
_NOISY_AT_INFO = ("feast.infra.registry.registry", "feast.infra.registry.caching_registry", "alembic.runtime.plugins")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with `extra=` fields at the top level, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class KeyValueFormatter(logging.Formatter):
    """Human-readable lines that still carry the structured fields as `key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RECORD_ATTRS)
        return f"{base} {extras}" if extras else base


def configure_logging(settings: Settings) -> None:
    """Send logs to stderr (stdout is for command output) in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Feast logs every registry cache refresh at INFO (a dozen lines per command); keep its warnings and errors.
    for noisy in _NOISY_AT_INFO:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
