"""Cost of the outbox over publishing directly, on the same bus and in the same run.

The baseline publishes N events straight to the bus (with confirms, on RabbitMQ);
the measured path commits N transactions that stage one event each in the outbox,
then lets a relay publish them. The ratio is what "nothing is lost" costs.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from nrm import migrations
from nrm.bus import Bus, Delivery, Subscription, create_bus
from nrm.db import Database
from nrm.events import envelope_for
from nrm.outbox import OutboxRelay, record_event
from services.intake.app import SERVICE as INTAKE
from services.intake.events import DiagnosticPinged

SUBSCRIPTION = Subscription("bench", (DiagnosticPinged.type,))


def _ping() -> DiagnosticPinged:
    return DiagnosticPinged(ping_id=uuid.uuid4(), org_id="bench")


async def _bus(broker_url: str | None) -> Bus:
    bus = create_bus(broker_url, delivery_limit=5, connection_name="nrm-bench")
    await bus.connect()
    await bus.declare([SUBSCRIPTION])

    async def discard(_: Delivery) -> None:
        return None

    await bus.consume(SUBSCRIPTION, discard)
    return bus


async def direct(bus: Bus, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        envelope = envelope_for(_ping())
        await bus.publish(envelope.type, envelope.to_json(), message_id=envelope.id)
    return time.perf_counter() - started


async def through_outbox(bus: Bus, db: Database, count: int) -> float:
    relay = OutboxRelay(db, bus)
    started = time.perf_counter()
    for _ in range(count):
        async with db.transaction() as session:
            record_event(session, _ping())
    while await relay.relay_once():
        pass
    return time.perf_counter() - started


async def run(count: int, database_url: str | None, broker_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        url = database_url or f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        db = Database(url)
        await migrations.upgrade(db, INTAKE.migrations)
        bus = await _bus(broker_url)
        try:
            await direct(bus, min(count, 50))  # warm-up: connections, caches
            baseline = await direct(bus, count)
            measured = await through_outbox(bus, db, count)
        finally:
            await bus.close()
            await db.dispose()
    return {"direct_s": baseline, "outbox_s": measured, "ratio": measured / baseline}
