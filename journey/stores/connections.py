"""Journey's connection settings in the shapes other libraries want: Feast's Redis connection string, the separate
PostgreSQL fields of Feast's configs and of psycopg, and the environment of Feast's own CLI (`feast_environment`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from journey.errors import InvalidInputError
from journey.settings import Profile, Settings


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


def feast_environment(settings: Settings) -> dict[str, str]:
    """The variables under which Feast's own CLI (`feast -f <profile's feature_store.yaml>`) and the feature repo's
    sources see the stores these settings name.

    `journey features env` prints them and `journey.stores.feature_store.repo_config` expands the same YAML with
    them, so Journey's config and `feast -f` agree. Where Feast wants Journey's values as they are (the SQL registry
    takes the SQLAlchemy URL) the Journey variable is reused; where it wants another shape (Redis connection string,
    separate PostgreSQL fields) a derived `JOURNEY_FEAST_*` variable carries it.
    """
    if settings.profile is Profile.LOCAL:  # the local YAML needs nothing; the Parquet sources follow the data folder
        return {"JOURNEY_PROFILE": settings.profile.value, "JOURNEY_DATA_DIR": str(settings.data_dir)}
    if "'" in settings.postgres_dsn:  # it goes into the YAML as it is (Journey reads the same variable)
        raise InvalidInputError(
            "JOURNEY_POSTGRES_DSN holds a quote: percent-encode it (%27), as URLs allow", field="JOURNEY_POSTGRES_DSN"
        )
    pg = postgres_params(settings.postgres_dsn)
    derived = {
        "JOURNEY_FEAST_REDIS": redis_connection_string(settings.redis_url),
        "JOURNEY_FEAST_PG_HOST": pg["host"],
        "JOURNEY_FEAST_PG_DATABASE": pg["database"],
        "JOURNEY_FEAST_PG_USER": pg["user"],
        "JOURNEY_FEAST_PG_PASSWORD": pg["password"],
        "JOURNEY_FEAST_PG_SSLMODE": pg["sslmode"],
    }
    if any("\n" in value or "\r" in value for value in derived.values()):
        raise InvalidInputError("a Redis or PostgreSQL setting holds a line break, which YAML cannot carry")
    return {
        "JOURNEY_PROFILE": settings.profile.value,
        "JOURNEY_FEAST_PROJECT": settings.feast_project,
        "JOURNEY_OFFLINE_SCHEMA": settings.offline_schema,
        "JOURNEY_POSTGRES_DSN": settings.postgres_dsn,
        "JOURNEY_FEAST_PG_PORT": str(pg["port"]),
        # single-quoted in the YAML (so "123" stays a string and ": " or "#" are text); a quote is written twice,
        # YAML's own escape, which Feast's plain text substitution then hands to the YAML parser unchanged
        **{name: value.replace("'", "''") for name, value in derived.items()},
    }
