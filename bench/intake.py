"""Case registration against a raw insert of the same JSON, and list latency vs table size.

Both sides run in-process behind the same ASGI transport and the same database, so
the ratio shows what validation, encryption, triage, the outbox and the access log
cost, not the network. The list benchmark fills the table directly through the
service function (the same rows an API call makes) and times the first page.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from sqlalchemy import text

from gateway.keys import SigningKeys, issue_access_token
from nrm.app import Runtime
from nrm.auth import Principal, TokenVerifier
from nrm.bus import InMemoryBus
from nrm.db import Database
from nrm.runner import migrate
from nrm.settings import Settings
from services.intake import service
from services.intake.app import create_app
from services.intake.schemas import CaseCreate

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


async def run(count: int, database_url: str | None) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), intake_database_url=database_url)
        await migrate(settings, ["intake"])
        keys = SigningKeys.load(settings)
        bus = InMemoryBus()
        await bus.connect()
        verifier = TokenVerifier(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        app = create_app(Runtime(settings, bus, verifier))
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
                baseline = await _time(raw, "/raw", {}, count)
                measured = await _time(client, "/api/v1/intake/cases", headers, count)
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
            results += await _list_latency(app, db, headers)
        await bus.close()
    return results


async def _list_latency(
    app: FastAPI, db: Database, headers: dict[str, str]
) -> list[dict[str, Any]]:
    principal = Principal("bench", "bench-org", frozenset({"intake_officer"}), frozenset(), "b")
    body = CaseCreate.model_validate(BODY)
    lines = []
    total = 0
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        for size in (1_000, 10_000):
            async with db.transaction() as session:
                for _ in range(size - total):
                    await service.register_case(session, app.state.keyring, principal, body)
            total = size
            latencies = []
            for _ in range(50):
                started = time.perf_counter()
                page = await client.get("/api/v1/intake/cases?limit=50", headers=headers)
                latencies.append(time.perf_counter() - started)
                assert page.status_code == 200
            lines.append(
                {
                    "bench": "GET /cases first page vs table size",
                    "cases": size,
                    "p50_ms": statistics.median(latencies) * 1000,
                    "p99_ms": _p99(latencies) * 1000,
                }
            )
    return lines


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(count: int = 200, database_url: str | None = None) -> list[dict[str, Any]]:
    return asyncio.run(run(count, database_url))
