"""model_versions.framework gains `onnx`: graphs built directly with onnx.helper, not converted from a framework.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

The next-item index kinds (popularity, last-item Markov, co-visitation, session-kNN) are ONNX graphs whose index
lives in their initializers; registering them as `pytorch` would misname what they are. Only the CHECK constraint
changes. SQLite changes a constraint by copying the table (batch mode); the one-production-version partial index is
dropped before the copy and created again after it with its frozen definition, so the copy cannot lose its WHERE.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "ck_model_versions_framework"
ONE_PRODUCTION_INDEX = "uq_model_versions_one_production"
ONE_PRODUCTION = sa.text("stage = 'production'")
WITH_ONNX = "framework IN ('xgboost', 'pytorch', 'onnx')"
WITHOUT_ONNX = "framework IN ('xgboost', 'pytorch')"


def _schema() -> str | None:
    """The registry schema (PostgreSQL) or None (SQLite): ALTER statements name their schema themselves."""
    schema: str | None = op.get_context().version_table_schema
    return schema


def _replace_check(condition: str) -> None:
    schema = _schema()
    op.drop_index(ONE_PRODUCTION_INDEX, table_name="model_versions", schema=schema)
    with op.batch_alter_table("model_versions", schema=schema) as batch:
        batch.drop_constraint(CONSTRAINT, type_="check")
        batch.create_check_constraint(CONSTRAINT, condition)
    op.create_index(
        ONE_PRODUCTION_INDEX,
        "model_versions",
        ["name"],
        unique=True,
        schema=schema,
        sqlite_where=ONE_PRODUCTION,
        postgresql_where=ONE_PRODUCTION,
    )


def upgrade() -> None:
    _replace_check(WITH_ONNX)


def downgrade() -> None:
    """Refused by the database while an `onnx` version exists (archive or delete those first): nothing is lost."""
    _replace_check(WITHOUT_ONNX)
