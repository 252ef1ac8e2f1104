"""The inbox: each event applied once per consumer, in one transaction with its effect."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.bus import Delivery, Rejected
from nrm.db import Database
from nrm.events import Envelope, Event, envelope_for
from nrm.inbox import EventConsumer
from nrm.settings import Settings
from services.intake.events import DiagnosticPinged
from services.notify.handlers import HANDLERS, record_ping
from services.notify.models import PingReceipt
from tests.support import PostgresDatabases, migrated_database


def _delivery(event: Event | None = None, *, body: bytes | None = None) -> Delivery:
    event = event or DiagnosticPinged(ping_id=uuid.uuid4(), org_id="org-test")
    envelope = envelope_for(event)
    return Delivery(
        routing_key=envelope.type, body=body or envelope.to_json(), message_id=envelope.id
    )


async def _receipts(db: Database) -> int:
    async with db.transaction() as session:
        return (await session.exec(select(func.count()).select_from(PingReceipt))).one()


async def _notify_db(settings: Settings) -> Database:
    return await migrated_database(settings.database_url("notify"), "notify")


async def test_duplicate_delivery_is_applied_once(settings: Settings) -> None:
    db = await _notify_db(settings)
    consumer = EventConsumer("notify", db, HANDLERS)
    delivery = _delivery()

    await consumer(delivery)
    await consumer(delivery)

    assert await _receipts(db) == 1
    await db.dispose()


async def test_failed_handler_leaves_no_trace_so_the_redelivery_applies(
    settings: Settings,
) -> None:
    db = await _notify_db(settings)
    calls = 0

    async def fails_once(session: AsyncSession, event: Any, envelope: Envelope) -> None:
        nonlocal calls
        calls += 1
        await record_ping(session, event, envelope)
        if calls == 1:
            raise ConnectionError("downstream hiccup")

    consumer = EventConsumer("notify", db, {DiagnosticPinged: fails_once})
    delivery = _delivery()
    with pytest.raises(ConnectionError):
        await consumer(delivery)
    assert await _receipts(db) == 0

    await consumer(delivery)
    assert await _receipts(db) == 1
    await db.dispose()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not a CloudEvents envelope"),
        (b'{"specversion": "1.0"}', "not a CloudEvents envelope"),
        (
            b'{"specversion":"1.0","id":"1","source":"/nrm/intake","type":"nrm.intake.diagnostic.'
            b'pinged.v1","time":"2026-01-01T00:00:00Z","data":{"ping_id":"nope","org_id":"o"}}',
            "data invalid: ping_id",
        ),
    ],
)
async def test_malformed_message_is_rejected_with_its_reason(
    settings: Settings, body: bytes, reason: str
) -> None:
    db = await _notify_db(settings)
    consumer = EventConsumer("notify", db, HANDLERS)
    with pytest.raises(Rejected) as rejected:
        await consumer(_delivery(body=body))
    assert reason in rejected.value.reason
    assert "nope" not in rejected.value.reason, "reasons never echo the values"
    assert await _receipts(db) == 0
    await db.dispose()


async def test_event_of_a_type_it_does_not_handle_is_acknowledged_quietly(
    settings: Settings,
) -> None:
    class SomethingElse(Event):
        type = "nrm.testing.nothing.happened.v1"
        source_id: str

    db = await _notify_db(settings)
    await EventConsumer("notify", db, HANDLERS)(_delivery(SomethingElse(source_id="s1")))
    assert await _receipts(db) == 0
    await db.dispose()


@pytest.mark.postgres
async def test_concurrent_duplicates_on_postgres_apply_once(postgres: PostgresDatabases) -> None:
    db = await migrated_database(await postgres.create("notify"), "notify")
    consumer = EventConsumer("notify", db, HANDLERS)
    delivery = _delivery()

    await asyncio.gather(*(consumer(delivery) for _ in range(5)))

    assert await _receipts(db) == 1
    await db.dispose()
