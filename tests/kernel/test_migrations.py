"""Every component's migrations run on SQLite and PostgreSQL and match its models."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from nrm import migrations
from nrm.db import Database
from nrm.runner import migrations_dir
from nrm.settings import COMPONENTS, Component, Settings
from tests.support import PostgresDatabases


def _component_metadata(component: Component) -> MetaData:
    import importlib

    package = "gateway" if component == "gateway" else f"services.{component}"
    module = importlib.import_module(f"{package}.models")
    base = getattr(module, f"{component.capitalize()}Table")
    return base.metadata  # type: ignore[no-any-return]


def _differences(connection: Connection, component: Component) -> list[Any]:
    combined = MetaData()
    for metadata in (SQLModel.metadata, _component_metadata(component)):
        for table in metadata.tables.values():
            table.to_metadata(combined)
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, combined))


async def _check(url: str, component: Component) -> None:
    db = Database(url)
    try:
        await migrations.upgrade(db, migrations_dir(component))
        async with db.engine.connect() as connection:
            assert await connection.run_sync(_differences, component) == []
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"outbox", "inbox", "idempotency_keys"} <= tables
        await migrations.upgrade(db, migrations_dir(component))  # a second run changes nothing
        async with db.engine.begin() as connection:
            await connection.run_sync(_downgrade_to_base, component)
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert tables <= {"alembic_version"}
    finally:
        await db.dispose()


def _downgrade_to_base(connection: Connection, component: Component) -> None:
    cfg = migrations.config(migrations_dir(component))
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, "base")


@pytest.mark.parametrize("component", COMPONENTS)
async def test_migrations_match_models_on_sqlite(settings: Settings, component: Component) -> None:
    await _check(settings.database_url(component), component)


@pytest.mark.postgres
@pytest.mark.parametrize("component", COMPONENTS)
async def test_migrations_match_models_on_postgres(
    postgres: PostgresDatabases, component: Component
) -> None:
    await _check(await postgres.create(component), component)
