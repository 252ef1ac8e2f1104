"""The double-entry ledger: every movement of money is one immutable journal entry.

Each budget line has five accounts: `funding` (where allocations come from; its balance
is minus what the line ever received), `available`, `reserved` (approved, not yet
paid), `paid` and `returned` (given back to the source). An entry moves a positive
amount from its credit account to its debit account, so it balances by its shape; the
database keeps the balances from the entries (trigger) and refuses a negative one
(CHECK). Operations on a line first lock the line's row, so concurrent reservations,
payouts and voids on one line queue instead of deadlocking, and each sees the
balance its predecessor committed.
"""

from __future__ import annotations

import time
import uuid
from datetime import date
from typing import Literal

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.errors import Conflict
from services.fund.models import Account, BudgetLine, JournalEntry

AccountKind = Literal["funding", "available", "reserved", "paid", "returned"]
ACCOUNT_KINDS: tuple[AccountKind, ...] = ("funding", "available", "reserved", "paid", "returned")
EntryKind = Literal["allocation", "reservation", "payout", "void", "return"]


def new_entry_id() -> str:
    # Time first, so listing the ledger by id lists it (roughly) in the order it was written.
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"


def open_accounts(session: AsyncSession, line: BudgetLine) -> None:
    for kind in ACCOUNT_KINDS:
        session.add(
            Account(id=str(uuid.uuid4()), line_id=line.id, kind=kind, currency=line.currency)
        )


async def lock_line(session: AsyncSession, line_id: str) -> BudgetLine | None:
    query = select(BudgetLine).where(BudgetLine.id == line_id).with_for_update()
    return (await session.exec(query.execution_options(populate_existing=True))).first()


async def balances(session: AsyncSession, line_id: str) -> dict[AccountKind, int]:
    # Column reads, never ORM objects: the trigger changes balances behind the session's back.
    rows = await session.exec(
        select(Account.kind, Account.balance_minor).where(Account.line_id == line_id)
    )
    return {kind: balance for kind, balance in rows.all()}  # type: ignore[misc]  # noqa: C416


async def _accounts(session: AsyncSession, line_id: str) -> dict[str, str]:
    rows = await session.exec(select(Account.kind, Account.id).where(Account.line_id == line_id))
    return dict(rows.all())


async def _post(
    session: AsyncSession,
    line: BudgetLine,
    kind: EntryKind,
    *,
    debit: AccountKind,
    credit: AccountKind,
    amount_minor: int,
    created_by: str,
    request_id: str | None = None,
    reserves_request_id: str | None = None,
    settles_disbursement_id: str | None = None,
    reference: str | None = None,
    value_date: date | None = None,
) -> JournalEntry:
    accounts = await _accounts(session, line.id)
    entry = JournalEntry(
        id=new_entry_id(),
        kind=kind,
        line_id=line.id,
        debit_account_id=accounts[debit],
        credit_account_id=accounts[credit],
        amount_minor=amount_minor,
        currency=line.currency,
        request_id=request_id,
        reserves_request_id=reserves_request_id,
        settles_disbursement_id=settles_disbursement_id,
        reference=reference,
        value_date=value_date,
        created_by=created_by,
    )
    session.add(entry)
    await session.flush()
    return entry


async def allocate(
    session: AsyncSession,
    line_id: str,
    amount_minor: int,
    *,
    created_by: str,
    reference: str | None = None,
    value_date: date | None = None,
) -> JournalEntry:
    line = await _locked(session, line_id)
    return await _post(
        session,
        line,
        "allocation",
        debit="available",
        credit="funding",
        amount_minor=amount_minor,
        created_by=created_by,
        reference=reference,
        value_date=value_date,
    )


async def reserve(
    session: AsyncSession, line_id: str, amount_minor: int, *, request_id: str, created_by: str
) -> int | None:
    """Move `amount_minor` from available to reserved; the new available balance, or None
    (and nothing written) when the line cannot cover it."""
    line = await _locked(session, line_id)
    available = (await balances(session, line.id))["available"]
    if available < amount_minor:
        return None
    try:
        await _reserve_entry(session, line, amount_minor, request_id, created_by)
    except IntegrityError:
        # Only where the line lock is a no-op (SQLite): a concurrent writer took the money
        # between our read and our write, and the CHECK refused the overdraft.
        raise Conflict(
            "The line's balance changed while reserving; nothing was reserved."
        ) from None
    return available - amount_minor


async def _reserve_entry(
    session: AsyncSession, line: BudgetLine, amount_minor: int, request_id: str, created_by: str
) -> None:
    await _post(
        session,
        line,
        "reservation",
        debit="reserved",
        credit="available",
        amount_minor=amount_minor,
        created_by=created_by,
        request_id=request_id,
        reserves_request_id=request_id,
    )


async def settle(
    session: AsyncSession,
    line_id: str,
    amount_minor: int,
    *,
    paid: bool,
    request_id: str,
    disbursement_id: str,
    created_by: str,
    reference: str | None = None,
) -> JournalEntry:
    """Paid: reserved → paid. Not paid: the reservation is voided back to available."""
    line = await _locked(session, line_id)
    return await _post(
        session,
        line,
        "payout" if paid else "void",
        debit="paid" if paid else "available",
        credit="reserved",
        amount_minor=amount_minor,
        created_by=created_by,
        request_id=request_id,
        settles_disbursement_id=disbursement_id,
        reference=reference,
    )


async def return_to_source(
    session: AsyncSession, line_id: str, amount_minor: int, *, created_by: str, reference: str
) -> JournalEntry | None:
    """Give unspent money back to the source (a donor's earmark ends); None if not available."""
    line = await _locked(session, line_id)
    if (await balances(session, line.id))["available"] < amount_minor:
        return None
    return await _post(
        session,
        line,
        "return",
        debit="returned",
        credit="available",
        amount_minor=amount_minor,
        created_by=created_by,
        reference=reference,
    )


async def discrepancies(session: AsyncSession) -> list[str]:
    """Accounts whose kept balance differs from the sum of their entries (should be none)."""
    debits = dict(
        (
            await session.exec(
                select(JournalEntry.debit_account_id, func.sum(JournalEntry.amount_minor)).group_by(
                    JournalEntry.debit_account_id
                )
            )
        ).all()
    )
    credits = dict(
        (
            await session.exec(
                select(
                    JournalEntry.credit_account_id, func.sum(JournalEntry.amount_minor)
                ).group_by(JournalEntry.credit_account_id)
            )
        ).all()
    )
    found = []
    for account_id, kind, balance in (
        await session.exec(select(Account.id, Account.kind, Account.balance_minor))
    ).all():
        derived = int(debits.get(account_id, 0)) - int(credits.get(account_id, 0))
        if derived != balance:
            found.append(f"account {account_id} keeps {balance}, entries say {derived}")
        if kind != "funding" and balance < 0:
            found.append(f"account {account_id} ({kind}) is negative")
    return found


async def _locked(session: AsyncSession, line_id: str) -> BudgetLine:
    line = await lock_line(session, line_id)
    if line is None:
        raise LookupError(f"no budget line {line_id}")
    return line
