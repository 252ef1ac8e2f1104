"""Referral benchmarks, one JSON line per result.

- Matching latency as the directory grows: p50/p99 of `rank_providers` over N services,
  with the growth ratio to the smallest size (a scan of every row would grow like N).
- With `--broker-url` (a scratch vhost): time from `case.registered` published on the bus
  to the referral created, at `--rate` cases per second (p50/p99).

Run: `python -m bench.referral [--sizes 1000 10000 100000] [--broker-url amqp://…]
[--database-url postgresql+asyncpg://… (an empty database)]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlmodel import select

from nrm import migrations
from nrm.app import Runtime
from nrm.auth import TokenVerifier
from nrm.clock import as_utc, utcnow
from nrm.db import Database
from nrm.events import envelope_for
from nrm.runner import connected_bus, migrate
from nrm.settings import Settings
from nrm.vocabulary import SERVICE_TYPES
from services.referral.app import SERVICE, create_app
from services.referral.geography import PLACES
from services.referral.matching import Need, rank_providers
from services.referral.models import Organization, Referral, Service

LANGUAGES = ("tg", "ru", "uz", "en", "ky")
FLAGS = ("sexual_exploitation", "labour_exploitation", "child", "")


async def _seed(db: Database, size: int, rng: random.Random) -> None:
    now = utcnow()
    places = list(PLACES)
    async with db.transaction() as session:
        await session.exec(
            insert(Organization),
            params=[
                {
                    "id": f"org-{i}",
                    "name": f"Org {i}",
                    "organization_type": "ngo",
                    "active": True,
                    "auto_route": True,
                    "created_at": now,
                }
                for i in range(100)
            ],
        )
    rows: list[dict[str, Any]] = []
    for i in range(size):
        place = rng.choice(places)
        total = rng.randint(0, 20)
        rows.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "organization_id": f"org-{i % 100}",
                "service_type": rng.choice(SERVICE_TYPES),
                "name": f"Service {i}",
                "status": "active" if rng.random() < 0.9 else "inactive",
                "languages": "," + ",".join(sorted(set(rng.sample(LANGUAGES, 2)))) + ",",
                "genders": rng.choice(("", ",female,", ",male,")),
                "accepts_children": rng.random() < 0.3,
                "sensitivities": (f",{flag}," if (flag := rng.choice(FLAGS)) else ""),
                "location_id": place.code,
                "region_code": place.region_code,
                "district_code": place.code if place.kind == "district" else None,
                "capacity_total": total,
                "capacity_available": rng.randint(0, total),
                "created_at": now,
                "updated_at": now,
            }
        )
    for start in range(0, size, 5000):
        async with db.transaction() as session:
            await session.exec(insert(Service), params=rows[start : start + 5000])


async def _measure(db: Database, queries: int, rng: random.Random) -> dict[str, float]:
    latencies: list[float] = []
    for _ in range(queries):
        need = Need(
            service_type=rng.choice(SERVICE_TYPES),
            region=rng.choice(PLACES).code,
            language=rng.choice(LANGUAGES),
            gender=rng.choice(("female", "male", "unknown")),
            age_band=rng.choice(("12-17", "25-34", "unknown")),
            sensitivity=(rng.choice(FLAGS[:3]),),
        )
        async with db.transaction() as session:
            started = time.perf_counter()
            await rank_providers(session, need, limit=10)
            latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return {
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 3),
    }


async def run_size(size: int, database_url: str, queries: int) -> dict[str, Any]:
    db = Database(database_url)
    try:
        await migrations.upgrade(db, SERVICE.migrations)
        rng = random.Random(size)
        await _seed(db, size, rng)
        await _measure(db, 20, rng)  # warm-up
        return {"services": size, **await _measure(db, queries, rng)}
    finally:
        await db.dispose()


class _NoKeys:
    """The pipeline bench calls no route: no token is ever verified."""

    async def key(self, kid: str) -> dict[str, Any] | None:
        return None


async def run_pipeline(
    broker_url: str, database_url: str, cases: int, rate: float
) -> dict[str, Any]:
    from services.intake.events import CaseRegistered  # the event intake publishes

    settings = Settings(broker_url=broker_url, referral_database_url=database_url)
    await migrate(settings, ["referral"])
    db = Database(database_url)
    rng = random.Random(1)
    await _seed(db, 1000, rng)
    await db.dispose()
    sent: dict[str, datetime] = {}
    async with connected_bus(settings, "bench-referral") as bus:
        verifier = TokenVerifier(_NoKeys(), issuer="bench", audience="bench")
        app = create_app(Runtime(settings, bus, verifier))
        async with app.router.lifespan_context(app):
            for _ in range(cases):
                event = CaseRegistered(
                    case_id=uuid.uuid4(),
                    org_id="org-1",
                    case_type="vulnerable_migrant",
                    urgency="high",
                    sensitivity=[],
                    needs=["legal_aid"],
                    region=rng.choice(PLACES).code,
                    language="tg",
                    consent_scopes=["referral:legal_aid"],
                )
                envelope = envelope_for(event)
                sent[str(event.case_id)] = envelope.time
                await bus.publish(envelope.type, envelope.to_json(), message_id=envelope.id)
                await asyncio.sleep(1 / rate)
            created: dict[str, datetime] = {}
            deadline = time.monotonic() + 60
            while len(created) < cases and time.monotonic() < deadline:
                async with app.state.db.transaction() as session:
                    rows = await session.exec(select(Referral.case_id, Referral.created_at))
                    created = {case_id: as_utc(at) for case_id, at in rows.all()}
                await asyncio.sleep(0.2)
    latencies = sorted(
        (created[case_id] - at).total_seconds() * 1000
        for case_id, at in sent.items()
        if case_id in created
    )
    return {
        "cases": cases,
        "rate_per_s": rate,
        "routed": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.referral")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--broker-url", default=None, help="amqp URL of a scratch vhost")
    parser.add_argument("--database-url", default=None, help="an empty referral database")
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="cases published per second")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            url = f"sqlite+aiosqlite:///{Path(scratch) / f'referral-{size}.db'}"
            result = asyncio.run(run_size(size, url, args.queries))
            base = results[0] if results else result
            result["p99_growth"] = round(result["p99_ms"] / base["p99_ms"], 2)
            result["size_growth"] = round(size / base["services"], 2)
            results.append(result)
            print(json.dumps({"bench": "referral matching", "setup": "SQLite", **result}))
        if args.broker_url:
            url = args.database_url or f"sqlite+aiosqlite:///{Path(scratch) / 'pipeline.db'}"
            line = asyncio.run(run_pipeline(args.broker_url, url, args.cases, args.rate))
            setup = "RabbitMQ, " + ("PostgreSQL" if url.startswith("postgresql") else "SQLite")
            print(
                json.dumps({"bench": "case.registered to referral created", "setup": setup, **line})
            )


if __name__ == "__main__":
    main()
