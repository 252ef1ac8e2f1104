"""The kernel's tables: outbox, inbox, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from nrm.migrations import create_kernel_tables, drop_kernel_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_kernel_tables()


def downgrade() -> None:
    drop_kernel_tables()
