"""alerts.object: what an alert about a tracked object of a detect camera adds
(``ObjectAlertDetail`` as JSON); NULL on every other alert.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("object", JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("alerts", "object")
