"""The outbox: events leave with their transaction, never without it, never lost."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from nrm.bus import Delivery, InMemoryBus, PublishFailed, Subscription
from nrm.clock import utcnow
from nrm.db import Database
from nrm.inbox import EventConsumer
from nrm.outbox import OutboxMessage, OutboxRelay, record_event
from nrm.runner import connected_bus
from nrm.settings import Settings
from services.intake.events import DiagnosticPinged
from services.notify.handlers import HANDLERS as NOTIFY_HANDLERS
from services.notify.models import PingReceipt
from tests.kernel.relay_crash import CRASH_EXIT_CODE
from tests.support import (
    SQLITE_AND_POSTGRES,
    PostgresDatabases,
    database_of,
    eventually,
    migrated_database,
)

PING_TYPE = DiagnosticPinged.type


def _ping() -> DiagnosticPinged:
    return DiagnosticPinged(ping_id=uuid.uuid4(), org_id="org-test")


async def _unpublished(db: Database) -> int:
    async with db.transaction() as session:
        query = select(func.count()).select_from(OutboxMessage)
        return (await session.exec(query.where(OutboxMessage.published_at == None))).one()  # noqa: E711


async def _recording_bus(received: list[Delivery]) -> InMemoryBus:
    bus = InMemoryBus()
    await bus.connect()
    subscription = Subscription("recorder", (PING_TYPE,))
    await bus.declare([subscription])

    async def record(delivery: Delivery) -> None:
        received.append(delivery)

    await bus.consume(subscription, record)
    return bus


async def test_event_is_published_after_its_transaction_commits(settings: Settings) -> None:
    db = await migrated_database(settings.database_url("intake"), "intake")
    received: list[Delivery] = []
    bus = await _recording_bus(received)
    async with db.transaction() as session:
        event_id = record_event(session, _ping())

    assert await OutboxRelay(db, bus).relay_once() == 1
    await eventually(lambda: _first(received))
    assert received[0].message_id == event_id
    assert await _unpublished(db) == 0
    await bus.close()
    await db.dispose()


async def _first(received: list[Delivery]) -> Delivery | None:
    return received[0] if received else None


async def test_event_of_a_rolled_back_transaction_is_never_published(settings: Settings) -> None:
    db = await migrated_database(settings.database_url("intake"), "intake")
    received: list[Delivery] = []
    bus = await _recording_bus(received)

    async def failing_state_change() -> None:
        async with db.transaction() as session:
            record_event(session, _ping())
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        await failing_state_change()

    assert await OutboxRelay(db, bus).relay_once() == 0
    assert await _unpublished(db) == 0
    assert received == []
    await bus.close()
    await db.dispose()


async def test_unpublishable_event_stays_in_the_outbox_for_a_later_try(settings: Settings) -> None:
    db = await migrated_database(settings.database_url("intake"), "intake")
    bus = InMemoryBus()
    await bus.connect()  # nobody bound: the broker would return the message
    async with db.transaction() as session:
        record_event(session, _ping())

    assert await OutboxRelay(db, bus).relay_once() == 0
    async with db.transaction() as session:
        row = (await session.exec(select(OutboxMessage))).one()
    assert row.published_at is None
    assert row.attempts == 1
    assert row.last_error
    with pytest.raises(PublishFailed):
        await bus.publish(PING_TYPE, b"{}", message_id="x")
    await bus.close()
    await db.dispose()


@pytest.fixture(params=SQLITE_AND_POSTGRES)
async def any_db(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Database]:
    async with database_of(request, settings, "intake") as database:
        yield database


async def test_events_go_out_in_the_order_they_were_recorded(any_db: Database) -> None:
    """Stored newest first on purpose: events leave in the order of their recording
    time, not in the order the rows were stored."""
    start = utcnow() - timedelta(minutes=1)
    async with any_db.transaction() as session:
        newest_first = [record_event(session, _ping()) for _ in range(5)]
        await session.flush()
        for age, message_id in enumerate(newest_first):
            row = await session.get(OutboxMessage, message_id)
            assert row is not None
            row.created_at = start - timedelta(seconds=age)
    received: list[Delivery] = []
    bus = await _recording_bus(received)

    assert await OutboxRelay(any_db, bus).relay_once() == 5
    await eventually(lambda: _all_arrived(received, 5))
    assert [d.message_id for d in received] == list(reversed(newest_first))
    await bus.close()


class _StalledBus(InMemoryBus):
    """A broker that takes its time to confirm, until told to go on."""

    def __init__(self) -> None:
        super().__init__()
        self.publishing = asyncio.Event()
        self.go_on = asyncio.Event()

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        self.publishing.set()
        await self.go_on.wait()
        await super().publish(*args, **kwargs)


async def test_a_slow_broker_does_not_hold_up_other_writes(any_db: Database) -> None:
    """On SQLite the first write of a transaction takes the only write lock: a relay
    that wrote before publishing would make every request wait on the broker."""
    async with any_db.transaction() as session:
        record_event(session, _ping())
    bus = _StalledBus()
    await bus.connect()
    await bus.declare([Subscription("recorder", (PING_TYPE,))])
    relaying = asyncio.create_task(OutboxRelay(any_db, bus).relay_once())
    await bus.publishing.wait()

    async with asyncio.timeout(5):  # busy_timeout would make it wait 30 s
        async with any_db.transaction() as session:
            record_event(session, _ping())
    bus.go_on.set()
    assert await relaying == 1
    await bus.close()


@pytest.mark.postgres
async def test_concurrent_relays_on_postgres_publish_each_event_once(
    postgres: PostgresDatabases,
) -> None:
    db = await migrated_database(await postgres.create("intake"), "intake")
    async with db.transaction() as session:
        ids = {record_event(session, _ping()) for _ in range(300)}
    received: list[Delivery] = []
    bus = await _recording_bus(received)
    relays = [OutboxRelay(db, bus, batch_size=20) for _ in range(4)]

    async def drain(relay: OutboxRelay) -> int:
        total = 0
        while published := await relay.relay_once():
            total += published
        return total

    counts = await asyncio.gather(*(drain(relay) for relay in relays))

    assert sum(counts) == len(ids)
    assert sum(1 for count in counts if count) > 1, "the relays did not actually overlap"
    await eventually(lambda: _all_arrived(received, len(ids)))
    assert sorted(d.message_id for d in received) == sorted(ids)
    await bus.close()
    await db.dispose()


async def _all_arrived(received: list[Delivery], expected: int) -> bool | None:
    return True if len(received) >= expected else None


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_relay_killed_between_publish_and_mark_causes_a_duplicate_applied_once(
    tmp_path: Path, isolated_rabbit_url: str, postgres: PostgresDatabases
) -> None:
    producer_url = await postgres.create("intake")
    producer = await migrated_database(producer_url, "intake")
    consumer_db = await migrated_database(await postgres.create("notify"), "notify")
    async with producer.transaction() as session:
        event_id = record_event(session, _ping())

    settings = Settings(data_dir=tmp_path, broker_url=isolated_rabbit_url)
    async with connected_bus(settings, "test-relay-crash") as bus:
        crashed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tests.kernel.relay_crash", producer_url, isolated_rabbit_url],
            capture_output=True,
            timeout=60,
        )
        assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr.decode()
        assert await _unpublished(producer) == 1, "the row must still look unsent"

        deliveries: list[str] = []
        notify = EventConsumer("notify", consumer_db, NOTIFY_HANDLERS)

        async def counting(delivery: Delivery) -> None:
            deliveries.append(delivery.message_id)
            await notify(delivery)

        await bus.consume(notify.subscription, counting)
        assert await OutboxRelay(producer, bus).relay_once() == 1

        await eventually(lambda: _all_arrived([d for d in deliveries if d == event_id], 2))  # type: ignore[misc]
        async with consumer_db.transaction() as session:
            receipts = (await session.exec(select(func.count()).select_from(PingReceipt))).one()
        assert receipts == 1
        assert await _unpublished(producer) == 0
    await producer.dispose()
    await consumer_db.dispose()


async def test_a_stream_of_commits_is_relayed_in_few_passes(settings: Settings) -> None:
    """Each commit wakes the relay, but passes stay `min_interval` apart: a burst of
    commits shares a pass instead of making one each."""
    db = await migrated_database(settings.database_url("intake"), "intake")
    received: list[Delivery] = []
    bus = await _recording_bus(received)
    relay = OutboxRelay(db, bus, idle_interval=60.0, min_interval=3.0)
    passes = 0
    relay_once = relay.relay_once

    async def counted() -> int:
        nonlocal passes
        passes += 1
        return await relay_once()

    relay.relay_once = counted  # type: ignore[method-assign]
    db.session_info[OutboxRelay.WAKE] = relay.wake
    relay.start()
    try:
        await eventually(lambda: _at_least(passes, 1))  # the first pass, on start
        for _ in range(10):
            async with db.transaction() as session:
                record_event(session, _ping())
        await eventually(lambda: _all_arrived(received, 10))
        assert passes == 2, "the ten commits' wake-ups made one pass between them"
    finally:
        await relay.stop()
    await bus.close()
    await db.dispose()


async def test_stopping_ends_the_wait_between_passes(settings: Settings) -> None:
    db = await migrated_database(settings.database_url("intake"), "intake")
    relay = OutboxRelay(db, InMemoryBus(), idle_interval=600.0, min_interval=600.0)
    relay.start()
    relay.wake()
    await asyncio.sleep(0.1)
    await asyncio.wait_for(relay.stop(grace=600.0), timeout=30.0)
    await db.dispose()


async def _at_least(value: int, wanted: int) -> bool | None:
    return True if value >= wanted else None
