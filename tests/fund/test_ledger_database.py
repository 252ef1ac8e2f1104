"""What the database itself refuses, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import select

from nrm.db import Database
from nrm.settings import Settings
from services.fund import ledger
from services.fund.models import Account, BudgetLine, JournalEntry, Source
from tests.support import SQLITE_AND_POSTGRES, database_of


async def new_line(db: Database, *, currency: str = "TJS") -> str:
    async with db.transaction() as session:
        source = Source(
            id=str(uuid.uuid4()), kind="donor", name="d", currency=currency, created_by="t"
        )
        session.add(source)
        await session.flush()
        line = BudgetLine(
            id=str(uuid.uuid4()),
            source_id=source.id,
            purpose="medical",
            currency=currency,
            low_balance_minor=0,
        )
        session.add(line)
        await session.flush()
        ledger.open_accounts(session, line)
    return line.id


@pytest.fixture(params=SQLITE_AND_POSTGRES)
async def db(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Database]:
    async with database_of(request, settings, "fund") as database:
        yield database


async def _accounts(db: Database, line_id: str) -> dict[str, str]:
    async with db.transaction() as session:
        rows = await session.exec(
            select(Account.kind, Account.id).where(Account.line_id == line_id)
        )
        return dict(rows.all())


async def _insert(
    db: Database,
    line_id: str,
    debit: str,
    credit: str,
    amount: int,
    *,
    currency: str = "TJS",
    settles_disbursement_id: str | None = None,
) -> None:
    accounts = await _accounts(db, line_id)
    async with db.transaction() as session:
        session.add(
            JournalEntry(
                id=ledger.new_entry_id(),
                kind="test",
                line_id=line_id,
                debit_account_id=accounts[debit],
                credit_account_id=accounts[credit],
                amount_minor=amount,
                currency=currency,
                settles_disbursement_id=settles_disbursement_id,
                created_by="test",
            )
        )


async def test_balances_follow_the_entries(db: Database) -> None:
    line_id = await new_line(db)
    await _insert(db, line_id, "available", "funding", 1_000)
    await _insert(db, line_id, "reserved", "available", 400)
    async with db.transaction() as session:
        kept = await ledger.balances(session, line_id)
        assert await ledger.discrepancies(session) == []
    assert kept == {"funding": -1_000, "available": 600, "reserved": 400, "paid": 0, "returned": 0}


async def test_an_entry_that_would_overdraw_available_is_refused(db: Database) -> None:
    line_id = await new_line(db)
    await _insert(db, line_id, "available", "funding", 1_000)
    with pytest.raises(IntegrityError):
        await _insert(db, line_id, "reserved", "available", 1_001)
    async with db.transaction() as session:
        assert (await ledger.balances(session, line_id))["available"] == 1_000


async def test_zero_negative_and_one_legged_entries_are_refused(db: Database) -> None:
    line_id = await new_line(db)
    for debit, credit, amount in (
        ("available", "funding", 0),
        ("available", "funding", -5),
        ("available", "available", 5),
    ):
        with pytest.raises(IntegrityError):
            await _insert(db, line_id, debit, credit, amount)


async def test_an_entry_in_another_currency_than_its_accounts_is_refused(db: Database) -> None:
    line_id = await new_line(db)
    with pytest.raises(IntegrityError):
        await _insert(db, line_id, "available", "funding", 5, currency="USD")


async def test_a_disbursement_cannot_be_settled_twice(db: Database) -> None:
    line_id = await new_line(db)
    await _insert(db, line_id, "available", "funding", 1_000)
    await _insert(db, line_id, "reserved", "available", 500)
    await _insert(db, line_id, "paid", "reserved", 200, settles_disbursement_id="d-1")
    with pytest.raises(IntegrityError):
        await _insert(db, line_id, "paid", "reserved", 200, settles_disbursement_id="d-1")
    with pytest.raises(IntegrityError):
        await _insert(db, line_id, "available", "reserved", 200, settles_disbursement_id="d-1")


async def test_journal_entries_cannot_be_changed_or_deleted(db: Database) -> None:
    line_id = await new_line(db)
    await _insert(db, line_id, "available", "funding", 1_000)
    for statement in (
        "UPDATE fund_journal_entries SET amount_minor = 1",
        "DELETE FROM fund_journal_entries",
    ):
        with pytest.raises(DBAPIError, match="immutable"):
            async with db.transaction() as session:
                await session.exec(text(statement))  # type: ignore[call-overload]
    async with db.transaction() as session:
        assert (await ledger.balances(session, line_id))["available"] == 1_000
