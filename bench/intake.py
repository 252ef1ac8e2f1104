"""Case registration against a raw insert of the same JSON, and list latency vs table size.

Both sides run in-process behind the same ASGI transport and the same database, so
the ratio shows what validation, encryption, triage, the outbox and the access log
cost, not the network. The outbox relay runs as in production and its events reach a
declared queue. The two sides alternate in blocks of 25 requests: on a shared machine the
speed drifts over seconds, and both must meet the same drift. Registration is also
driven at a steady 100 requests a second, each timed from when it was due (a late
start counts against it), for its p99.

The list benchmark registers the first cases through the service function, then
grows the table to 100 000 with copies of those rows (new ids, older times; half of
them another organisation's) and times the first page and a deep page at each size.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from sqlalchemy import func, insert, select, text

from gateway.keys import SigningKeys, issue_access_token
from nrm.app import Runtime
from nrm.auth import Principal, TokenVerifier
from nrm.bus import InMemoryBus
from nrm.bus.base import Subscription
from nrm.db import Database
from nrm.outbox import OutboxMessage
from nrm.runner import migrate
from nrm.settings import Settings
from nrm.telemetry import tracer_provider
from services.intake import service
from services.intake.app import create_app
from services.intake.models import Case
from services.intake.schemas import CaseCreate

CASES = Case.__table__  # type: ignore[attr-defined]
BODY: dict[str, Any] = {
    "case_type": "presumed_trafficking_victim",
    "channel": "border",
    "person": {
        "given_name": "Bench",
        "family_name": "Person",
        "birth_date": "1990-01-01",
        "gender": "female",
        "citizenship": "TJ",
        "languages": ["tg"],
        "location": {"region": "TJ-SU"},
    },
    "situation": {"exploitation_types": ["labour"], "narrative": "synthetic"},
    "needs": ["shelter"],
    "consent": {"scopes": ["assistance", "referral:shelter"], "method": "verbal", "language": "tg"},
}


def _raw_app(db: Database) -> FastAPI:
    app = FastAPI()

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, str]:
        async with db.engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO bench_raw (id, body) VALUES (:id, :body)"),
                {"id": str(uuid.uuid4()), "body": (await request.body()).decode()},
            )
        return {"status": "ok"}

    return app


async def _time(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], count: int
) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        answer = await client.post(url, json=BODY, headers=headers)
        latencies.append(time.perf_counter() - started)
        assert answer.status_code in (200, 201), answer.text
    return latencies


async def _steady(
    client: httpx.AsyncClient, headers: dict[str, str], *, rate: float, seconds: float
) -> list[float]:
    """Registrations sent on a fixed schedule whatever the answers do; each one's latency
    counts from when it was due, so a backlog shows instead of slowing the load."""
    latencies: list[float] = []
    first_due = time.perf_counter() + 0.1

    async def register(due: float) -> None:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        answer = await client.post("/api/v1/intake/cases", json=BODY, headers=headers)
        latencies.append(time.perf_counter() - due)
        assert answer.status_code == 201, answer.text

    await asyncio.gather(*(register(first_due + i / rate) for i in range(int(rate * seconds))))
    return latencies


async def run(
    count: int, database_url: str | None, steady_seconds: float = 10.0
) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), intake_database_url=database_url)
        await migrate(settings, ["intake"])
        keys = SigningKeys.load(settings)
        bus = InMemoryBus()
        await bus.connect()
        # As in production, where every consumer's queue is declared: the relay publishes
        # each event once instead of retrying an unroutable one.
        await bus.declare([Subscription("bench", ("nrm.intake.#",))])
        verifier = TokenVerifier(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        # Traced as `nrm serve intake` is without a collector (settings name none).
        provider = tracer_provider("nrm-intake", settings)
        app = create_app(Runtime(settings, bus, verifier, provider))
        token, _ = issue_access_token(
            keys,
            subject="bench",
            org="bench-org",
            roles=["intake_officer"],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        headers = {"Authorization": f"Bearer {token}"}
        results: list[dict[str, Any]] = []
        async with app.router.lifespan_context(app):
            db: Database = app.state.db
            async with db.engine.begin() as connection:
                await connection.execute(
                    text("CREATE TABLE bench_raw (id VARCHAR(36) PRIMARY KEY, body TEXT)")
                )
            transport = httpx.ASGITransport(app=app)
            raw_transport = httpx.ASGITransport(app=_raw_app(db))
            async with (
                httpx.AsyncClient(transport=transport, base_url="http://intake") as client,
                httpx.AsyncClient(transport=raw_transport, base_url="http://raw") as raw,
            ):
                await _time(raw, "/raw", {}, 20)  # warm-up
                await _time(client, "/api/v1/intake/cases", headers, 20)
                # In alternating blocks (see the module's docstring).
                baseline, measured = [], []
                for block in _blocks(count):
                    baseline += await _time(raw, "/raw", {}, block)
                    measured += await _time(client, "/api/v1/intake/cases", headers, block)
                steady = await _steady(client, headers, rate=100.0, seconds=steady_seconds)
            results.append(
                {
                    "bench": "case registration vs raw insert",
                    "database": db.engine.dialect.name,
                    "raw_per_s": count / sum(baseline),
                    "registration_per_s": count / sum(measured),
                    "ratio": sum(baseline) / sum(measured),
                    "registration_p99_ms": _p99(measured) * 1000,
                }
            )
            results.append(
                {
                    "bench": "case registration at a steady rate",
                    "database": db.engine.dialect.name,
                    "target_per_s": 100.0,
                    "achieved_per_s": len(steady) / steady_seconds,
                    "p50_ms": statistics.median(steady) * 1000,
                    "p99_ms": _p99(steady) * 1000,
                    "max_ms": max(steady) * 1000,
                }
            )
            results += await _list_latency(app, db, headers)
        await bus.close()
    return results


LIST_SIZES = (1_000, 10_000, 100_000)
DEEP_PAGE = 20


async def _list_latency(
    app: FastAPI, db: Database, headers: dict[str, str]
) -> list[dict[str, Any]]:
    principal = Principal("bench", "bench-org", frozenset({"intake_officer"}), frozenset(), "b")
    body = CaseCreate.model_validate(BODY)
    async with db.transaction() as session:
        for _ in range(LIST_SIZES[0] - await _count(db)):
            await service.register_case(session, app.state.keyring, principal, body)
    # The relay publishes those registrations' events in passes of 100, in this process:
    # timed beside one of them, a page waited ~0.1 s for it. The lists are timed alone.
    await _relayed(db)
    lines = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        for size in LIST_SIZES:
            await _grow(db, size)
            first_page = await _time_pages(client, headers, pages=1)
            deep_page = await _time_pages(client, headers, pages=DEEP_PAGE)
            lines.append(
                {
                    "bench": "GET /cases vs table size",
                    "cases": size,
                    "first_page_p50_ms": statistics.median(first_page) * 1000,
                    "first_page_p99_ms": _p99(first_page) * 1000,
                    f"page_{DEEP_PAGE}_p50_ms": statistics.median(deep_page) * 1000,
                }
            )
    return lines


async def _relayed(db: Database) -> None:
    pending = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.published_at.is_(None)  # type: ignore[union-attr]
        )
    )
    while True:
        async with db.engine.connect() as connection:
            if not (await connection.execute(pending)).scalar_one():
                return
        await asyncio.sleep(0.1)


async def _count(db: Database) -> int:
    async with db.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(CASES))).scalar_one())


async def _grow(db: Database, size: int) -> None:
    """Copies of the registered cases until the table holds `size`: new ids, older times,
    every other one belonging to another organisation (which the list must skip)."""
    async with db.engine.begin() as connection:
        templates = [dict(row) for row in (await connection.execute(select(CASES))).mappings()]
        oldest = min(row["created_at"] for row in templates)
        have = len(templates) if size == LIST_SIZES[0] else await _count(db)
        for start in range(have, size, 5_000):
            batch = []
            for n in range(start, min(size, start + 5_000)):
                row = dict(templates[n % len(templates)])
                row["id"] = str(uuid.uuid4())
                row["org_id"] = "bench-org" if n % 2 else "other-org"
                row["created_at"] = row["updated_at"] = oldest - timedelta(seconds=n)
                batch.append(row)
            await connection.execute(insert(CASES), batch)


async def _time_pages(
    client: httpx.AsyncClient, headers: dict[str, str], *, pages: int
) -> list[float]:
    """The time of the last of `pages` pages, followed by cursor, 30 times over."""
    latencies = []
    for _ in range(30):
        cursor = None
        for _ in range(pages):
            query = "limit=50" + (f"&cursor={cursor}" if cursor else "")
            started = time.perf_counter()
            page = await client.get(f"/api/v1/intake/cases?{query}", headers=headers)
            elapsed = time.perf_counter() - started
            assert page.status_code == 200, page.text
            cursor = page.json()["next_cursor"]
        latencies.append(elapsed)
    return latencies


BLOCK = 25


def _blocks(count: int) -> list[int]:
    return [min(BLOCK, count - start) for start in range(0, count, BLOCK)]


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(count: int = 200, database_url: str | None = None) -> list[dict[str, Any]]:
    return asyncio.run(run(count, database_url))
