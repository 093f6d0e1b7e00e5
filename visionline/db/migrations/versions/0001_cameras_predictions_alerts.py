"""cameras, predictions and alerts

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("camera_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("max_fps", sa.Float, nullable=False, server_default="30"),
        sa.Column("upload_key_hash", sa.String(128)),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("camera_id", sa.String(64), nullable=False, index=True),
        sa.Column("frame_id", sa.String(128), nullable=False),
        sa.Column("captured_at", TS, nullable=False, index=True),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(20), nullable=False),
        sa.Column("served_by", sa.String(40), nullable=False),
        sa.Column("label", sa.String(200)),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("top_k", JSONB, nullable=False),
        sa.Column("quality", JSONB, nullable=False),
        sa.Column("stages", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("camera_id", "frame_id", name="uq_predictions_frame"),
    )
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(300), primary_key=True),
        sa.Column("camera_id", sa.String(64), nullable=False, index=True),
        sa.Column("frame_id", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("severity", sa.String(20), nullable=False, index=True),
        sa.Column("captured_at", TS, nullable=False, index=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(20), nullable=False),
        sa.Column("published", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("predictions")
    op.drop_table("cameras")
