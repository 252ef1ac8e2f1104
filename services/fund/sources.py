"""Sources, their budget lines and allocations; the ledger and balance reports as read."""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.errors import Invalid, NotFound
from nrm.paging import keyset_page
from nrm.vocabulary import FundPurpose
from services.fund import ledger
from services.fund.config import FundSettings
from services.fund.models import (
    Account,
    BudgetLine,
    Disbursement,
    FundRequest,
    JournalEntry,
    Source,
)
from services.fund.schemas import (
    AllocationCreate,
    BalanceReport,
    DisbursedTotal,
    EntryPublic,
    LinePublic,
    SourceCreate,
    SourcePublic,
)

PURPOSES: tuple[FundPurpose, ...] = (
    "shelter",
    "medical",
    "legal",
    "return_travel",
    "subsistence",
    "other",
)


def check_currency(currency: str, settings: FundSettings) -> None:
    if currency not in settings.currencies:
        raise Invalid(f"Currency {currency} is not one the fund accepts.")


async def create_source(
    session: AsyncSession, body: SourceCreate, *, by: Principal, settings: FundSettings
) -> SourcePublic:
    check_currency(body.currency, settings)
    wanted = body.lines or []
    purposes = [line.purpose for line in wanted] or list(PURPOSES)
    if len(set(purposes)) != len(purposes):
        raise Invalid("A source has at most one budget line per purpose.")
    thresholds = {line.purpose: line.low_balance_minor for line in wanted}
    source = Source(
        id=str(uuid.uuid4()),
        kind=body.kind,
        name=body.name,
        currency=body.currency,
        created_by=by.subject,
    )
    session.add(source)
    await session.flush()
    for purpose in purposes:
        threshold = thresholds.get(purpose)
        line = BudgetLine(
            id=str(uuid.uuid4()),
            source_id=source.id,
            purpose=purpose,
            currency=source.currency,
            low_balance_minor=settings.low_balance_minor if threshold is None else threshold,
        )
        session.add(line)
        await session.flush()
        ledger.open_accounts(session, line)
    await session.flush()
    return await source_public(session, source)


async def allocate(
    session: AsyncSession, source_id: str, body: AllocationCreate, *, by: Principal
) -> SourcePublic:
    source = await session.get(Source, source_id)
    if source is None:
        raise NotFound("No such source.")
    if body.currency != source.currency:
        raise Invalid(f"This source keeps {source.currency}, not {body.currency}.")
    line = (
        await session.exec(
            select(BudgetLine).where(
                BudgetLine.source_id == source.id, BudgetLine.purpose == body.purpose
            )
        )
    ).first()
    if line is None:
        raise Invalid(f"This source has no budget line for {body.purpose}.")
    await ledger.allocate(
        session,
        line.id,
        body.amount_minor,
        created_by=by.subject,
        reference=body.reference,
        value_date=body.value_date,
    )
    return await source_public(session, source)


async def source_public(session: AsyncSession, source: Source) -> SourcePublic:
    lines = (
        await session.exec(
            select(BudgetLine)
            .where(BudgetLine.source_id == source.id)
            .order_by(col(BudgetLine.created_at), col(BudgetLine.purpose))
        )
    ).all()
    return SourcePublic(
        id=uuid.UUID(source.id),
        kind=source.kind,
        name=source.name,
        currency=source.currency,
        created_at=source.created_at,
        lines=[await line_public(session, line) for line in lines],
    )


async def line_public(session: AsyncSession, line: BudgetLine) -> LinePublic:
    kept = await ledger.balances(session, line.id)
    return LinePublic(
        id=uuid.UUID(line.id),
        purpose=line.purpose,
        currency=line.currency,
        low_balance_minor=line.low_balance_minor,
        allocated_minor=-kept["funding"],
        available_minor=kept["available"],
        reserved_minor=kept["reserved"],
        paid_minor=kept["paid"],
        returned_minor=kept["returned"],
    )


async def list_sources(session: AsyncSession) -> list[SourcePublic]:
    sources = (
        await session.exec(select(Source).order_by(col(Source.created_at), col(Source.id)))
    ).all()
    return [await source_public(session, source) for source in sources]


async def ledger_page(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[EntryPublic], str | None]:
    entries, next_cursor = await keyset_page(
        session, select(JournalEntry), JournalEntry.id, limit=limit, cursor=cursor
    )
    kinds = dict((await session.exec(select(Account.id, Account.kind))).all())
    return [
        EntryPublic(
            id=entry.id,
            kind=entry.kind,
            line_id=uuid.UUID(entry.line_id),
            debit=kinds[entry.debit_account_id],
            credit=kinds[entry.credit_account_id],
            amount_minor=entry.amount_minor,
            currency=entry.currency,
            request_id=uuid.UUID(entry.request_id) if entry.request_id else None,
            reference=entry.reference,
            value_date=entry.value_date,
            created_at=entry.created_at,
        )
        for entry in entries
    ], next_cursor


async def balance_report(session: AsyncSession) -> BalanceReport:
    reserved: dict[str, int] = defaultdict(int)
    pending = 0
    for currency, amount in (
        await session.exec(
            select(Disbursement.currency, Disbursement.amount_minor).where(
                col(Disbursement.status).in_(("pending", "in_flight"))
            )
        )
    ).all():
        reserved[currency] += amount
        pending += 1
    paid = (
        await session.exec(
            select(Disbursement, FundRequest)
            .join(FundRequest, col(FundRequest.id) == col(Disbursement.request_id))
            .where(Disbursement.status == "paid")
        )
    ).all()
    totals: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for disbursement, request in paid:
        settled = disbursement.settled_at
        month = settled.strftime("%Y-%m") if settled else "unknown"
        key = (request.purpose, month, request.org_id, disbursement.currency)
        totals[key] += disbursement.amount_minor
    return BalanceReport(
        sources=await list_sources(session),
        pending_reservations=pending,
        reserved_minor_by_currency=dict(reserved),
        disbursed=[
            DisbursedTotal(purpose=p, month=m, org_id=o, currency=c, amount_minor=a)
            for (p, m, o, c), a in sorted(totals.items())
        ],
    )


async def count_entries(session: AsyncSession) -> int:
    return int((await session.exec(select(func.count()).select_from(JournalEntry))).one())
