"""operator API: api_tokens (roles), audit_log (who changed what), alert states
(acknowledged, resolved: who and when), rule_sets (versioned rules the workers pick up),
webhook_subscriptions and webhook_deliveries

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False, server_default=""),
        sa.Column("last_used_at", TS),
        sa.Column("revoked_at", TS),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("detail", JSONB, nullable=False),
    )
    op.create_index("ix_audit_log_target", "audit_log", ["target", "at"])
    op.add_column(
        "alerts", sa.Column("state", sa.String(16), nullable=False, server_default="open")
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])
    for column in ("acknowledged", "resolved"):
        op.add_column("alerts", sa.Column(f"{column}_by", sa.String(100)))
        op.add_column("alerts", sa.Column(f"{column}_at", TS))
    op.add_column("alerts", sa.Column("resolution", sa.String(2000)))
    op.create_table(
        "rule_sets",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("document", JSONB, nullable=False),
        sa.Column("changed_by", sa.String(100), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("comment", sa.String(2000), nullable=False, server_default=""),
    )
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("filter", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "subscription_id",
            sa.Integer,
            sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("alert_id", sa.String(300), primary_key=True),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.String(2000)),
        sa.Column("delivered_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.drop_table("rule_sets")
    op.drop_index("ix_alerts_state", "alerts")
    for column in (
        "state",
        "acknowledged_by",
        "acknowledged_at",
        "resolved_by",
        "resolved_at",
        "resolution",
    ):
        op.drop_column("alerts", column)
    op.drop_index("ix_audit_log_target", "audit_log")
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
