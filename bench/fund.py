"""Fund throughput on one budget line: approvals + payouts per second under 32
concurrent clients on PostgreSQL, as a ratio to a raw `UPDATE … WHERE available >=
amount` loop on the same server in the same run. Invariants are checked after.

    python -m bench.fund --postgres-url postgresql+asyncpg://postgres@127.0.0.1/postgres

The URL names a server's admin database; the bench makes and drops its own database.
It drives the domain functions (approve, cash handover) in their own transactions, as a
route would, without HTTP: it measures the ledger and its locking, not the web stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import text
from sqlmodel import func, select

from nrm import migrations
from nrm.auth import Principal
from nrm.db import Database
from services.fund import approvals, ledger, payouts
from services.fund.app import SERVICE
from services.fund.config import FundSettings
from services.fund.models import BudgetLine, FundRequest, KnownCase, Source

AMOUNT = 1_000
OFFICER = Principal(
    "bench-officer", "ministry-labour", frozenset({"fund_officer"}), frozenset(), ""
)


async def _admin(admin_url: str, statement: str) -> None:
    connection = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _prepare(db: Database, count: int) -> str:
    async with db.transaction() as session:
        source = Source(
            id=str(uuid.uuid4()),
            kind="state_budget",
            name="bench",
            currency="TJS",
            created_by="bench",
        )
        line = BudgetLine(
            id=str(uuid.uuid4()),
            source_id=source.id,
            purpose="other",
            currency="TJS",
            low_balance_minor=0,
        )
        case = KnownCase(case_id=str(uuid.uuid4()), org_id="bench", status="open")
        session.add_all([source, case])
        await session.flush()
        session.add(line)
        await session.flush()
        ledger.open_accounts(session, line)
        await session.flush()
        await ledger.allocate(session, line.id, AMOUNT * count, created_by="bench")
        for _ in range(count):
            session.add(
                FundRequest(
                    id=str(uuid.uuid4()), case_id=case.case_id, org_id="bench",
                    submitted_by="bench-maker",
                    amount_minor=AMOUNT, currency="TJS", purpose="other", payee_kind="person",
                    payout_method="cash_office", justification="bench", status="pending",
                )
            )  # fmt: skip
    return line.id


async def _fund_run(db: Database, clients: int) -> tuple[int, float]:
    settings = FundSettings(_env_file=None)
    async with db.transaction() as session:
        query = select(FundRequest.id).where(FundRequest.status == "pending")
        pending = list((await session.exec(query)).all())
    queue: asyncio.Queue[str] = asyncio.Queue()
    for request_id in pending:
        queue.put_nowait(request_id)

    async def client() -> None:
        while not queue.empty():
            request_id = queue.get_nowait()
            now = datetime.now(UTC)
            async with db.transaction() as session:
                await approvals.approve(
                    session, request_id, by=OFFICER, settings=settings, line_id=None, now=now
                )
            async with db.transaction() as session:
                await payouts.record_cash_handover(
                    session, request_id, by=OFFICER, receipt_number=request_id[:8], now=now
                )

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(pending), time.perf_counter() - started


async def _raw_run(db: Database, count: int, clients: int) -> float:
    async with db.engine.begin() as connection:
        await connection.execute(
            text("CREATE TABLE bench_raw (id int PRIMARY KEY, available bigint NOT NULL)")
        )
        await connection.execute(
            text("INSERT INTO bench_raw VALUES (1, :a)"), {"a": AMOUNT * count}
        )
    remaining = [count]

    async def client() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            async with db.engine.begin() as connection:
                await connection.execute(
                    text(
                        "UPDATE bench_raw SET available = available - :a"
                        " WHERE id = 1 AND available >= :a"
                    ),
                    {"a": AMOUNT},
                )

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


async def _invariants(db: Database, line_id: str, count: int) -> dict[str, object]:
    async with db.transaction() as session:
        kept = await ledger.balances(session, line_id)
        problems = await ledger.discrepancies(session)
        query = select(func.count()).select_from(FundRequest)
        unpaid = (await session.exec(query.where(FundRequest.status != "paid"))).one()
    assert problems == [], problems
    assert kept["paid"] == AMOUNT * count, kept
    assert kept["available"] == kept["reserved"] == 0, kept
    assert unpaid == 0
    return {"paid_minor": kept["paid"], "discrepancies": 0}


async def run(admin_url: str, count: int, clients: int) -> dict[str, object]:
    name = f"nrm_bench_fund_{uuid.uuid4().hex[:8]}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    db = Database(admin_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        await migrations.upgrade(db, SERVICE.migrations)
        line_id = await _prepare(db, count)
        done, fund_seconds = await _fund_run(db, clients)
        invariants = await _invariants(db, line_id, done)
        raw_seconds = await _raw_run(db, count, clients)
    finally:
        await db.dispose()
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    fund_rate, raw_rate = done / fund_seconds, count / raw_seconds
    return {
        "bench": "fund approvals+payouts vs raw conditional UPDATE",
        "clients": clients,
        "operations": done,
        "fund_per_second": round(fund_rate, 1),
        "raw_per_second": round(raw_rate, 1),
        "ratio": round(fund_rate / raw_rate, 3),
        **invariants,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fund")
    parser.add_argument(
        "--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.postgres_url, args.requests, args.clients))))


if __name__ == "__main__":
    main()
