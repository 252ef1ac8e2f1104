"""Bookkeeping rows past their time are deleted; nothing still needed ever is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from gateway.keys import SigningKeys
from nrm.bus import InMemoryBus
from nrm.db import Database
from nrm.retention import IDEMPOTENCY, INBOX, OUTBOX, RetentionPolicy, RetentionSweeper
from nrm.runner import migrate
from nrm.settings import Settings
from services.notify.app import create_app as create_notify
from tests.support import SQLITE_AND_POSTGRES, database_of, eventually, runtime_for, serving

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
POLICY = RetentionPolicy(
    outbox=timedelta(days=7), inbox=timedelta(days=30), idempotency=timedelta(days=7)
)


def outbox_row(name: str, *, created: datetime, published: datetime | None) -> dict[str, object]:
    return {
        "id": name,
        "type": "nrm.test.v1",
        "body": "{}",
        "created_at": created,
        "next_attempt_at": created,
        "published_at": published,
        "attempts": 0,
    }


async def fill(db: Database) -> None:
    long_ago, lately = NOW - timedelta(days=60), NOW - timedelta(days=1)
    async with db.engine.begin() as connection:
        await connection.execute(
            insert(OUTBOX),
            [
                outbox_row("published-long-ago", created=long_ago, published=long_ago),
                outbox_row("published-lately", created=lately, published=lately),
                # Never published (the broker was down for two months): kept, to be sent.
                outbox_row("never-published", created=long_ago, published=None),
            ],
        )
        await connection.execute(
            insert(INBOX),
            [
                {
                    "consumer": "c",
                    "event_id": "handled-long-ago",
                    "type": "t",
                    "received_at": long_ago,
                },
                {"consumer": "c", "event_id": "handled-lately", "type": "t", "received_at": lately},
            ],
        )
        await connection.execute(
            insert(IDEMPOTENCY),
            [
                {
                    "scope": "s",
                    "key": key,
                    "request_hash": "h",
                    "created_at": at,
                    "lease_until": at,
                }
                for key, at in (("answered-long-ago", long_ago), ("answered-lately", lately))
            ],
        )


async def left(db: Database) -> dict[str, set[str]]:
    async with db.engine.connect() as connection:
        return {
            "outbox": set((await connection.execute(select(OUTBOX.c.id))).scalars()),
            "inbox": set((await connection.execute(select(INBOX.c.event_id))).scalars()),
            "idempotency": set((await connection.execute(select(IDEMPOTENCY.c.key))).scalars()),
        }


@pytest.fixture(params=SQLITE_AND_POSTGRES)
async def db(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Database]:
    async with database_of(request, settings, "notify") as database:
        yield database


async def test_only_rows_past_their_time_are_deleted(db: Database) -> None:
    await fill(db)

    deleted = await RetentionSweeper(db, POLICY, clock=lambda: NOW).sweep()

    assert deleted == {"outbox": 1, "inbox": 1, "idempotency_keys": 1}
    assert await left(db) == {
        "outbox": {"published-lately", "never-published"},
        "inbox": {"handled-lately"},
        "idempotency": {"answered-lately"},
    }


async def test_a_backlog_goes_in_batches_until_none_is_left(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RetentionSweeper, "BATCH", 2)
    long_ago = NOW - timedelta(days=60)
    async with db.engine.begin() as connection:
        rows = [outbox_row(f"old-{n}", created=long_ago, published=long_ago) for n in range(5)]
        await connection.execute(insert(OUTBOX), rows)

    deleted = await RetentionSweeper(db, POLICY, clock=lambda: NOW).sweep()

    assert deleted["outbox"] == 5
    assert (await left(db))["outbox"] == set()


async def test_every_service_sweeps_its_database_from_the_start(
    settings: Settings, signing_keys: SigningKeys
) -> None:
    await migrate(settings, ["notify"])
    db = Database(settings.database_url("notify"))
    real_now = datetime.now(UTC)
    long_ago = real_now - timedelta(hours=settings.outbox_retention_hours + 1)
    async with db.engine.begin() as connection:
        await connection.execute(
            insert(OUTBOX), [outbox_row("published-long-ago", created=long_ago, published=long_ago)]
        )
    bus = InMemoryBus()
    await bus.connect()
    try:
        async with serving(create_notify(runtime_for(settings, bus, signing_keys))):

            async def swept() -> bool | None:
                return True if not (await left(db))["outbox"] else None

            await eventually(swept)
    finally:
        await bus.close()
        await db.dispose()
