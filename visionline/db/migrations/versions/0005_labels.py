"""labels: frame_labels (true labels per frame and source), label_predictions (waiting for or
joined to labels) and label_outcomes (tp/fp/fn/tn per part and model, idempotent)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "frame_labels",
        sa.Column("camera_id", sa.String(64), primary_key=True),
        sa.Column("frame_id", sa.String(128), primary_key=True),
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("label_id", sa.String(300), nullable=False),
        sa.Column("captured_at", TS, nullable=False),
        sa.Column("labelled_at", TS, nullable=False),
        sa.Column("message", JSONB, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_frame_labels_camera_captured", "frame_labels", ["camera_id", "captured_at"])
    op.create_index("ix_frame_labels_frame", "frame_labels", ["frame_id"])
    op.create_table(
        "label_predictions",
        sa.Column("prediction_id", sa.String(300), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("frame_id", sa.String(128), nullable=False),
        sa.Column("captured_at", TS, nullable=False),
        sa.Column("parts", JSONB, nullable=False),
        sa.Column("models", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_label_predictions_frame", "label_predictions", ["camera_id", "frame_id"])
    op.create_table(
        "label_outcomes",
        sa.Column("outcome_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("frame_id", sa.String(128), nullable=False),
        sa.Column("prediction_id", sa.String(300), nullable=False),
        sa.Column("label_id", sa.String(300), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("version", sa.String(20), nullable=False),
        sa.Column("slot", sa.String(200), nullable=False),
        sa.Column("match", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(2), nullable=False),
        sa.Column("predicted_defective", sa.Boolean, nullable=False),
        sa.Column("true_defective", sa.Boolean, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("part_id", sa.String(128)),
        sa.Column("iou", sa.Float),
        sa.Column("captured_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_label_outcomes_frame", "label_outcomes", ["camera_id", "frame_id"])
    op.create_index(
        "ix_label_outcomes_group", "label_outcomes", ["camera_id", "model", "version", "kind"]
    )
    op.create_index("ix_label_outcomes_captured", "label_outcomes", ["captured_at"])


def downgrade() -> None:
    op.drop_table("label_outcomes")
    op.drop_table("label_predictions")
    op.drop_table("frame_labels")
