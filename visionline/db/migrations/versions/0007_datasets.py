"""datasets: dataset_versions (one row per immutable, content-addressed import of a user's
labelled images: classes, counts, sizes, who, when, what was skipped)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("classes", JSONB, nullable=False),
        sa.Column("image_count", sa.Integer, nullable=False),
        sa.Column("counts", JSONB, nullable=False),
        sa.Column("sizes", JSONB, nullable=False),
        sa.Column("skipped", JSONB, nullable=False),
        sa.Column("source", sa.String(2000), nullable=False, server_default=""),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_dataset_versions_version"),
    )
    op.create_index("ix_dataset_versions_name", "dataset_versions", ["name", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_dataset_versions_name", "dataset_versions")
    op.drop_table("dataset_versions")
