"""Alembic, run programmatically on the component's own async engine.

Each component keeps its revisions in `<component>/migrations/`; its env.py calls
`run_env`. The kernel's own tables (outbox, inbox, idempotency keys) are created by
every service's first revision through `create_kernel_tables`.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from nrm import idempotency, inbox, outbox  # noqa: F401  (registers the kernel tables)
from nrm.db import Database

# Any constant will do: it only has to be the same for every `nrm migrate` process.
_MIGRATION_LOCK = 7_314_226


def config(migrations_dir: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    return cfg


async def upgrade(db: Database, migrations_dir: Path, revision: str = "head") -> None:
    async with db.engine.begin() as connection:
        await connection.run_sync(_upgrade, config(migrations_dir), revision)


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Two replicas starting together must not both apply the same revision.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def run_env(service_metadata: MetaData) -> None:
    """The body of every component's migrations/env.py."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("Run migrations with `nrm migrate <component>`.")
    context.configure(
        connection=connection,
        target_metadata=[SQLModel.metadata, service_metadata],
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def create_kernel_tables() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
    )
    op.create_index("ix_outbox_pending", "outbox", ["published_at", "next_attempt_at"])
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(100), primary_key=True),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(400), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
    )


def drop_kernel_tables() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("inbox")
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")
