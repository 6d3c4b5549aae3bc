"""Journey's connection settings in the shapes other libraries want: Feast's Redis connection string, the separate
PostgreSQL fields of Feast's configs and of psycopg."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from journey.errors import InvalidInputError


def redis_connection_string(url: str) -> str:
    """`redis://[:password@]host:port/db` -> Feast's `host:port,db=N[,password=...]` (Feast has no URL parser)."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise InvalidInputError(f"not a redis:// URL: {url!r}", field="JOURNEY_REDIS_URL", value=url)
    db = parts.path.lstrip("/") or "0"
    out = f"{parts.hostname}:{parts.port or 6379},db={db}"
    if parts.password:
        out += f",password={parts.password}"
    if parts.scheme == "rediss":
        out += ",ssl=true"
    return out


def postgres_params(dsn: str) -> dict[str, Any]:
    """SQLAlchemy URL -> the separate fields Feast's PostgreSQL configs want."""
    url = make_url(dsn)
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "database": url.database or "postgres",
        "user": url.username or "postgres",
        "password": url.password or "",
        "sslmode": str(url.query.get("sslmode", "prefer")),
    }
