"""Ledger invariants as properties: whatever happens, entries balance and no balance is
negative, and the balances the database keeps equal the sums of the entries."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select

from nrm.db import Database
from services.fund import ledger
from services.fund.models import Account, JournalEntry
from tests.fund.test_ledger_database import new_line
from tests.support import migrated_database

amounts = st.integers(min_value=1, max_value=5_000)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("allocate"), amounts),
        st.tuples(st.just("reserve"), amounts),
        st.tuples(st.just("pay"), st.integers(0, 30)),
        st.tuples(st.just("void"), st.integers(0, 30)),
        st.tuples(st.just("settle_again"), st.integers(0, 30)),
        st.tuples(st.just("return"), amounts),
    ),
    max_size=30,
)


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('ledger') / 'fund.db'}"

    async def prepare() -> None:
        db = await migrated_database(url, "fund")
        await db.dispose()

    asyncio.run(prepare())
    return url


async def _apply(db: Database, steps: list[tuple[str, int]]) -> None:
    line_id = await new_line(db)
    expected = {"funding": 0, "available": 0, "reserved": 0, "paid": 0, "returned": 0}
    open_reservations: list[tuple[str, int]] = []
    settled: list[tuple[str, int]] = []
    for step, value in steps:
        async with db.transaction() as session:
            if step == "allocate":
                await ledger.allocate(session, line_id, value, created_by="p")
                expected["funding"] -= value
                expected["available"] += value
            elif step == "reserve":
                request_id = str(uuid.uuid4())
                left = await ledger.reserve(
                    session, line_id, value, request_id=request_id, created_by="p"
                )
                assert (left is None) == (value > expected["available"])
                if left is not None:
                    expected["available"] -= value
                    expected["reserved"] += value
                    open_reservations.append((request_id, value))
            elif step in ("pay", "void") and open_reservations:
                request_id, amount = open_reservations.pop(value % len(open_reservations))
                paid = step == "pay"
                await ledger.settle(
                    session,
                    line_id,
                    amount,
                    paid=paid,
                    request_id=request_id,
                    disbursement_id=request_id,
                    created_by="p",
                )
                expected["reserved"] -= amount
                expected["paid" if paid else "available"] += amount
                settled.append((request_id, amount))
            elif step == "return":
                entry = await ledger.return_to_source(
                    session, line_id, value, created_by="p", reference="end of grant"
                )
                assert (entry is None) == (value > expected["available"])
                if entry is not None:
                    expected["available"] -= value
                    expected["returned"] += value
        if step == "settle_again" and settled:
            request_id, amount = settled[value % len(settled)]
            with pytest.raises(IntegrityError):
                async with db.transaction() as session:
                    await ledger.settle(
                        session,
                        line_id,
                        amount,
                        paid=True,
                        request_id=request_id,
                        disbursement_id=request_id,
                        created_by="p",
                    )
        async with db.transaction() as session:
            assert await ledger.balances(session, line_id) == expected
            assert await ledger.discrepancies(session) == []
            # Double entry: across all accounts, the balances sum to zero.
            total = select(func.coalesce(func.sum(Account.balance_minor), 0))
            assert (await session.exec(total)).one() == 0
            lines_posted = select(func.count()).select_from(JournalEntry)
            not_positive = lines_posted.where(col(JournalEntry.amount_minor) <= 0)
            assert (await session.exec(not_positive)).one() == 0


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=operations)
def test_any_sequence_of_ledger_operations_keeps_it_balanced_and_never_negative(
    database_url: str, steps: list[tuple[str, int]]
) -> None:
    async def run() -> None:
        db = Database(database_url)
        try:
            await _apply(db, steps)
        finally:
            await db.dispose()

    asyncio.run(run())
