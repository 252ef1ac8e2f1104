"""The kernel's tables, and receipts of diagnostic pings.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nrm.migrations import create_kernel_tables, drop_kernel_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_kernel_tables()
    op.create_table(
        "ping_receipts",
        sa.Column("ping_id", sa.String(36), primary_key=True),
        sa.Column("source_org", sa.String(100), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ping_receipts")
    drop_kernel_tables()
