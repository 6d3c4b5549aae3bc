"""Alembic environment of the model registry.

`Registry.migrate` hands over an open connection (already inside its transaction, with PostgreSQL's
`schema_translate_map` set) and the schema in `config.attributes`; run without one (e.g. `alembic revision
--autogenerate` against a config whose script_location is this folder), it connects with the current
`JOURNEY_*` settings. Migrations use schema-less tables, like the models: the connection maps them to the registry
schema on PostgreSQL, where the version table lives too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from journey.registry.database import create_registry_engine, migration_lock_key, registry_schema
from journey.registry.orm import Base
from journey.settings import get_settings


def run_on(connection: Connection, schema: str | None) -> None:
    if connection.dialect.name == "postgresql":
        # One migrator per schema at a time: a second process waits here, then finds the work done.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": migration_lock_key(schema)})
    if schema is not None:
        quoted = connection.dialect.identifier_preparer.quote_schema(schema)
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table_schema=schema,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them (0002+)
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("the registry migrations run online only (Registry.migrate())")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection, context.config.attributes.get("schema"))
        return
    settings = get_settings()
    engine = create_registry_engine(settings)
    try:
        with engine.begin() as own:
            run_on(own, registry_schema(settings))
    finally:
        engine.dispose()


main()
