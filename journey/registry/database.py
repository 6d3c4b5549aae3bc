"""Where the registry's rows live, and how the database gets to the newest schema.

The rows live in SQL: a SQLite file `data_dir/registry.db` in the local profile, schema `registry_schema` of
PostgreSQL in prod. One set of models serves both (`journey.registry.orm`): the engine of the prod profile maps the
models' schema-less tables to the registry schema through `schema_translate_map`; SQLite has no schemas.

Schema changes are Alembic migrations in `journey/registry/migrations/versions/` (0001, 0002, ...). A `Registry`
upgrades its database to the newest migration on first use (idempotent, one check per instance; concurrent
upgraders on PostgreSQL are serialised by an advisory lock), so neither tests nor deployments need a separate step.
"""

from __future__ import annotations

import logging
import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError

from journey.errors import JourneyError, ServiceUnavailableError
from journey.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

# One logger for the whole package: the registry's log lines keep the name they have always had.
log = logging.getLogger("journey.registry")

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
# The newest migration in MIGRATIONS_DIR (a test keeps them equal). Knowing it without importing Alembic keeps the
# common case, a database already at head, to one small query: Alembic costs ~0.5 s to import.
HEAD_REVISION: Final = "0003"
VERSION_TABLE: Final = "alembic_version"
# Alembic's `context` is a module-global proxy: two threads of one process must not run migrations at once (other
# processes are kept apart by the database: an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite).
MIGRATION_LOCK: Final = threading.Lock()


# ---------------------------------------------------------------------------------------------------------- engines


def registry_schema(settings: Settings) -> str | None:
    """The schema the registry's tables live in: `registry_schema` on PostgreSQL, none on SQLite."""
    backend = make_url(settings.registry_database_url).get_backend_name()
    return None if backend == "sqlite" else settings.registry_schema


def create_registry_engine(settings: Settings) -> Engine:
    """An engine whose schema-less tables land in the registry schema (PostgreSQL) or the SQLite file."""
    url = make_url(settings.registry_database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings.registry_database_url)
    schema = registry_schema(settings)
    connect_args = {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}
    return create_engine(
        url,
        pool_pre_ping=True,  # serving keeps a registry for hours; a restarted database must not fail the next read
        connect_args=connect_args,
        execution_options={"schema_translate_map": {None: schema}},
    )


def _sqlite_engine(url: str) -> Engine:
    """SQLite with `BEGIN IMMEDIATE`: a transaction takes the write lock up front, so two registrations queue
    (busy timeout) instead of both reading max(version) and one failing on the upgrade to a write lock."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not emit its own BEGIN

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def unavailable(exc: OperationalError, location: str) -> ServiceUnavailableError:
    """The database could not be reached: an error naming the registry (password masked) and the driver's reason."""
    reason = next((line.strip() for line in str(exc.orig).splitlines() if line.strip()), type(exc).__name__)
    return ServiceUnavailableError(f"model registry at {location} unavailable: {reason}")


# ------------------------------------------------------------------------------------------------------- migrations


def alembic_config(connection: Connection | None = None, schema: str | None = None) -> Config:
    """Alembic's configuration without an ini file: the migrations ship inside the package; `env.py` runs them on
    `connection` (in the caller's transaction) with the version table in `schema`."""
    from alembic.config import Config  # Alembic costs ~0.5 s to import: only when a migration runs

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


def migration_lock_key(schema: str | None) -> int:
    """A stable advisory-lock key per registry schema (PostgreSQL), so only one process migrates it at a time."""
    return zlib.crc32(f"journey-registry:{schema}".encode())


def current_revision(connection: Connection, schema: str | None) -> str | None:
    """The revision the database is at (None: never migrated), read without Alembic."""
    if not inspect(connection).has_table(VERSION_TABLE, schema=schema):
        return None
    table = f"{_quoted_schema(connection, schema)}.{VERSION_TABLE}" if schema else VERSION_TABLE
    return connection.execute(text(f"SELECT version_num FROM {table}")).scalar()


def _quoted_schema(connection: Connection, schema: str | None) -> str:
    return connection.dialect.identifier_preparer.quote_schema(schema or "")


def upgrade(connection: Connection, current: str | None, schema: str | None, location: str) -> None:
    """Run Alembic up to head on `connection`, inside its transaction (atomic where DDL is transactional)."""
    from alembic import command  # Alembic costs ~0.5 s to import: only when the database lags
    from alembic.util import CommandError

    log.info("migrating the model registry", extra={"registry": location, "from": current})
    try:
        command.upgrade(alembic_config(connection, schema), "head")
    except CommandError as exc:  # typically a database migrated by a newer release than this code
        raise JourneyError(
            f"cannot migrate the model registry at {location} from revision {current} to {HEAD_REVISION}: {exc}"
        ) from exc
