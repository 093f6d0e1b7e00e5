"""cameras.model: the classifier of a classify camera (a model of the Triton repository);
NULL means the default classifier.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cameras", sa.Column("model", sa.String(100)))


def downgrade() -> None:
    op.drop_column("cameras", "model")
