"""inspection: cameras.pipeline, part_decisions, alerts.part, the part_line_counts view

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# Parts that crossed a camera's exit line, per camera, from every decision ever written
# (each decision once: decision_id is the primary key). "passed" includes "insufficient".
LINE_COUNTS_VIEW = """
CREATE VIEW part_line_counts AS
SELECT camera_id,
       count(*) FILTER (WHERE crossed_line) AS crossed,
       count(*) FILTER (WHERE crossed_line AND NOT defective) AS passed,
       count(*) FILTER (WHERE crossed_line AND defective) AS rejected,
       count(*) FILTER (WHERE crossed_line AND status = 'insufficient') AS insufficient,
       count(*) AS decided,
       max(decided_at) AS last_decided_at
FROM part_decisions
GROUP BY camera_id
"""


def upgrade() -> None:
    op.add_column(
        "cameras",
        sa.Column("pipeline", sa.String(16), nullable=False, server_default="classify"),
    )
    op.add_column("alerts", sa.Column("part", JSONB, nullable=True))
    # The outbox query looks for unpublished alerts: few rows, found through this index.
    op.create_index(
        "ix_alerts_unpublished", "alerts", ["alert_id"], postgresql_where=sa.text("NOT published")
    )
    op.create_table(
        "part_decisions",
        sa.Column("decision_id", sa.String(300), primary_key=True),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("track_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("defective", sa.Boolean, nullable=False),
        sa.Column("defect_class", sa.String(100)),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("frames_seen", sa.Integer, nullable=False),
        sa.Column("defect_frames", sa.Integer, nullable=False),
        sa.Column("first_frame_id", sa.String(128), nullable=False),
        sa.Column("last_frame_id", sa.String(128), nullable=False),
        sa.Column("best_frame_id", sa.String(128), nullable=False),
        sa.Column("crossed_line", sa.Boolean, nullable=False),
        sa.Column("box", JSONB, nullable=False),
        sa.Column("defects", JSONB, nullable=False),
        sa.Column("snapshot", sa.String(500)),
        sa.Column("models", JSONB, nullable=False),
        sa.Column("counts", JSONB, nullable=False),
        sa.Column("captured_at", TS, nullable=False),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index(
        "ix_part_decisions_camera_decided", "part_decisions", ["camera_id", "decided_at"]
    )
    op.execute(LINE_COUNTS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW part_line_counts")
    op.drop_table("part_decisions")
    op.drop_index("ix_alerts_unpublished", table_name="alerts")
    op.drop_column("alerts", "part")
    op.drop_column("cameras", "pipeline")
