"""drift: drift_events (one row per confirmed drift) and drift_state (detector banks)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "drift_events",
        sa.Column("event_id", sa.String(300), primary_key=True),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("signal", sa.String(64), nullable=False),
        sa.Column("detector", sa.String(32), nullable=False),
        sa.Column("detector_params", JSONB, nullable=False),
        sa.Column("detected_frame_id", sa.String(128), nullable=False),
        sa.Column("detected_at", TS, nullable=False),
        sa.Column("frame_id", sa.String(128), nullable=False),
        sa.Column("captured_at", TS, nullable=False),
        sa.Column("before", JSONB, nullable=False),
        sa.Column("after", JSONB, nullable=False),
        sa.Column("statistic", sa.Float, nullable=False),
        sa.Column("p_value", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_drift_events_camera_captured", "drift_events", ["camera_id", "captured_at"])
    op.create_index(
        "ix_drift_events_unpublished",
        "drift_events",
        ["event_id"],
        postgresql_where=sa.text("NOT published"),
    )
    op.create_table(
        "drift_state",
        sa.Column("camera_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("offsets", JSONB, nullable=False),
        sa.Column("frames", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("drift_state")
    op.drop_index("ix_drift_events_unpublished", table_name="drift_events")
    op.drop_index("ix_drift_events_camera_captured", table_name="drift_events")
    op.drop_table("drift_events")
