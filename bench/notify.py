"""Webhook fan-out: N events to S subscriptions on a loopback receiver.

Runs notify embedded (SQLite, in-memory bus). Measures deliveries per second and the
delay from publishing an event to its webhook arriving (p50, p99), first with every
receiver fast (the baseline), then with one receiver answering after 2 s: the other
receivers' numbers should barely move. `python -m bench.notify [--events N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from gateway.keys import SigningKeys
from nrm import migrations
from nrm.app import Runtime
from nrm.auth import TokenVerifier
from nrm.bus import create_bus
from nrm.db import Database
from nrm.events import envelope_for
from nrm.settings import Settings
from services.notify.app import SERVICE, create_app
from services.notify.subscriptions import create_subscription
from services.referral.events import ReferralCreated

ORG = "org-bench"
EMPTY = (
    "DELETE FROM delivery_attempts",
    "DELETE FROM deliveries",
    "DELETE FROM subscriptions",
    "DELETE FROM inbox",
)


class Receiver:
    """Records when each event id arrived; answers 200 after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrivals: dict[str, float] = {}
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length)
                self.arrivals[json.loads(body)["id"]] = time.monotonic()
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _event() -> ReferralCreated:
    return ReferralCreated(
        referral_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        from_org="org-police",
        to_org=ORG,
        service_type="shelter",
        urgency="high",
        due_at=datetime.now(UTC) + timedelta(hours=4),
    )


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def _scenario(
    events: int, subscriptions: int, slow: int, deadline: float, database_url: str | None = None
) -> dict[str, Any]:
    receivers = [Receiver(2.0 if i < slow else 0.0) for i in range(subscriptions)]
    servers = []
    for receiver in receivers:
        server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        receiver.port = server.sockets[0].getsockname()[1]
        servers.append(server)
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            data_dir=Path(directory),
            notify_webhook_allowlist="127.0.0.1",
            notify_database_url=database_url,
            _env_file=None,
        )
        db = Database(settings.database_url("notify"))
        await migrations.upgrade(db, SERVICE.migrations)
        async with db.transaction() as session:  # a reused database starts empty
            for statement in EMPTY:
                await session.exec(text(statement))  # type: ignore[call-overload]
        await db.dispose()
        bus = create_bus(None, delivery_limit=5, connection_name="bench-notify")
        await bus.connect()
        assert SERVICE.subscription is not None
        await bus.declare([SERVICE.subscription])
        keys = SigningKeys.load(settings)
        verifier = TokenVerifier(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        app: FastAPI = create_app(Runtime(settings, bus, verifier))
        async with app.router.lifespan_context(app):
            async with app.state.db.transaction() as session:
                for receiver in receivers:
                    await create_subscription(
                        session,
                        app.state.notify_channels,
                        org_id=ORG,
                        url=f"http://127.0.0.1:{receiver.port}/hook",
                        event_types=["*"],
                    )
            published: dict[str, float] = {}
            started = time.monotonic()
            for _ in range(events):
                envelope = envelope_for(_event())
                published[envelope.id] = time.monotonic()
                await bus.publish(envelope.type, envelope.to_json(), message_id=envelope.id)
            fast = receivers[slow:]
            while time.monotonic() - started < deadline:
                if all(len(r.arrivals) >= events for r in fast):
                    break
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
        await bus.close()
    for server in servers:
        server.close()
    delays = [r.arrivals[i] - published[i] for r in fast for i in r.arrivals]
    return {
        "events": events,
        "subscriptions": subscriptions,
        "slow_receivers": slow,
        "fast_deliveries": len(delays),
        "seconds": round(elapsed, 2),
        "deliveries_per_second": round(len(delays) / elapsed, 1),
        "p50_ms": round(_percentile(delays, 0.50) * 1000, 1),
        "p99_ms": round(_percentile(delays, 0.99) * 1000, 1),
        "slow_delivered": sum(len(r.arrivals) for r in receivers[:slow]),
    }


async def run(
    events: int, subscriptions: int, deadline: float, database_url: str | None = None
) -> list[dict[str, Any]]:
    os.environ.setdefault("NRM_NOTIFY_POLL_SECONDS", "0.2")
    os.environ.setdefault("NRM_NOTIFY_WEBHOOK_TIMEOUT_SECONDS", "5")
    baseline = await _scenario(events, subscriptions, 0, deadline, database_url)
    with_slow = await _scenario(events, subscriptions, 1, deadline, database_url)
    ratio = with_slow["p99_ms"] / baseline["p99_ms"] if baseline["p99_ms"] else float("nan")
    with_slow["p99_ratio_to_baseline"] = round(ratio, 2)
    return [baseline, with_slow]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.notify")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=20)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds per scenario")
    parser.add_argument(
        "--database-url", default=None, help="notify database (default: SQLite in a temp dir)"
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.events, args.subscriptions, args.deadline, args.database_url))
    for line in results:
        print(json.dumps({"bench": "notify webhook fan-out", **line}))


if __name__ == "__main__":
    main()
