"""Routes: per endpoint, the variants (model versions + weights) that answer, a shadow, and the history of changes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

    routes           one row per endpoint that has a route (no row: the production version answers everything)
    route_variants   the variants of a route, in their fixed order (position), each a model version and a weight
    route_history    one row per change (revision 1, 2, ... per endpoint) with the whole route as JSON; rollback
                     restores the revision a change replaced (`previous_revision`)
    audit_log.kind   `model` (every row before this revision) or `route`: route changes are audited in the same log

Variants and the shadow point at model versions by (name, version) foreign keys, so PostgreSQL itself refuses a
route to a version that does not exist. `audit_log` gains a column with a CHECK constraint: SQLite copies the table
for that (batch mode, `env.py`), keeping its rows and index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types of this revision (a migration never imports the models, which move on).
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_TIME = sa.DateTime(timezone=True)
MODEL_VERSION_KEY = ["model_versions.name", "model_versions.version"]


def _schema() -> str | None:
    """The registry schema (PostgreSQL) or None (SQLite). ALTER statements name their schema themselves: unlike
    CREATE TABLE, Alembic's ALTER does not go through the connection's schema_translate_map."""
    schema: str | None = op.get_context().version_table_schema
    return schema


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=_schema()) as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="model"))
        batch.create_check_constraint("ck_audit_log_kind", "kind IN ('model', 'route')")
    op.create_table(
        "routes",
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("experiment", sa.String(63), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("shadow_version", sa.Integer(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", name="pk_routes"),
        sa.ForeignKeyConstraint(
            ["model", "shadow_version"], MODEL_VERSION_KEY, name="fk_routes_model_shadow_version_model_versions"
        ),
        sa.CheckConstraint("revision >= 1", name="ck_routes_revision_positive"),
    )
    op.create_table(
        "route_variants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_route_variants"),
        sa.ForeignKeyConstraint(
            ["endpoint"], ["routes.endpoint"], name="fk_route_variants_endpoint_routes", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model", "version"], MODEL_VERSION_KEY, name="fk_route_variants_model_version_model_versions"
        ),
        sa.UniqueConstraint("endpoint", "name", name="uq_route_variants_endpoint_name"),
        sa.UniqueConstraint("endpoint", "position", name="uq_route_variants_endpoint_position"),
        sa.CheckConstraint("weight >= 0", name="ck_route_variants_weight_non_negative"),
    )
    op.create_table(
        "route_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("route", JSON_DOCUMENT, nullable=True),
        sa.Column("previous_revision", sa.Integer(), nullable=True),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_route_history"),
        sa.UniqueConstraint("endpoint", "revision", name="uq_route_history_endpoint_revision"),
        sa.CheckConstraint(
            "action IN ('set', 'deploy', 'shadow', 'clear', 'rollback')", name="ck_route_history_action"
        ),
    )


def downgrade() -> None:
    op.drop_table("route_history")
    op.drop_table("route_variants")
    op.drop_table("routes")
    with op.batch_alter_table("audit_log", schema=_schema()) as batch:
        batch.drop_constraint("ck_audit_log_kind", type_="check")
        batch.drop_column("kind")
