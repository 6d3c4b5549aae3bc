"""Model registry: model_versions (one row per registered ONNX version) and audit_log (every change).

Revision ID: 0001
Revises:
Create Date: 2026-11-20

Tables carry no schema: on PostgreSQL the connection's schema_translate_map puts them in `registry_schema`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types of this revision (a migration never imports the models, which move on).
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_TIME = sa.DateTime(timezone=True)
ONE_PRODUCTION = sa.text("stage = 'production'")


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("framework", sa.String(16), nullable=False),
        sa.Column("onnx_sha256", sa.String(64), nullable=False),
        sa.Column("bento_tag", sa.String(128), nullable=False),
        sa.Column("feature_service", sa.String(128), nullable=False),
        sa.Column("metrics", JSON_DOCUMENT, nullable=False),
        sa.Column("data_window", JSON_DOCUMENT, nullable=False),
        sa.Column("params", JSON_DOCUMENT, nullable=False),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False, server_default="staging"),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        sa.CheckConstraint("stage IN ('staging', 'production', 'archived')", name="ck_model_versions_stage"),
        sa.CheckConstraint("framework IN ('xgboost', 'pytorch')", name="ck_model_versions_framework"),
        sa.CheckConstraint("version >= 1", name="ck_model_versions_version_positive"),
    )
    op.create_index(
        "uq_model_versions_one_production",
        "model_versions",
        ["name"],
        unique=True,
        sqlite_where=ONE_PRODUCTION,
        postgresql_where=ONE_PRODUCTION,
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("before", JSON_DOCUMENT, nullable=True),
        sa.Column("after", JSON_DOCUMENT, nullable=True),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_name_version", "audit_log", ["name", "version"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_name_version", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("uq_model_versions_one_production", table_name="model_versions")
    op.drop_table("model_versions")
