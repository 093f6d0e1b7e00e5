"""model registry: retrain_jobs (state machine) and model_versions (lineage of served versions)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
EMPTY = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.create_table(
        "retrain_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("trigger_ref", sa.String(300)),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False, server_default=""),
        sa.Column("history", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("parent_version", sa.Integer),
        sa.Column("candidate_version", sa.Integer),
        sa.Column("metrics", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("dataset", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "trigger IN ('drift', 'schedule', 'operator')", name="ck_retrain_jobs_trigger"
        ),
        sa.CheckConstraint(
            "state IN ('queued', 'building_dataset', 'training', 'evaluating', 'promoted',"
            " 'rejected', 'failed')",
            name="ck_retrain_jobs_state",
        ),
    )
    op.create_index("ix_retrain_jobs_state", "retrain_jobs", ["state"])
    op.create_index("ix_retrain_jobs_model_created", "retrain_jobs", ["model", "created_at"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parent_version", sa.Integer),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("retrain_jobs.id", ondelete="SET NULL")),
        sa.Column("metrics", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("promoted_at", TS),
        sa.Column("promoted_by", sa.String(100), nullable=False, server_default=""),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("model", "version", name="uq_model_versions_version"),
        sa.CheckConstraint(
            "status IN ('serving', 'retired', 'rolled_back')", name="ck_model_versions_status"
        ),
    )
    # At most one serving version per model.
    op.create_index(
        "ux_model_versions_serving",
        "model_versions",
        ["model"],
        unique=True,
        postgresql_where=sa.text("status = 'serving'"),
    )


def downgrade() -> None:
    op.drop_index("ux_model_versions_serving", table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_index("ix_retrain_jobs_model_created", table_name="retrain_jobs")
    op.drop_index("ix_retrain_jobs_state", table_name="retrain_jobs")
    op.drop_table("retrain_jobs")
