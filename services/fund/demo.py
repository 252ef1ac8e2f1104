"""Demo data (dev only): the demo organisations' sectors and two funded sources."""

from __future__ import annotations

import uuid
from datetime import date

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.demo import ORGANIZATIONS
from services.fund import ledger
from services.fund.handlers import remember_organization
from services.fund.models import BudgetLine, KnownOrganization, Source
from services.fund.sources import PURPOSES

DEMO = "demo-loader"
# Stable ids, so a second `nrm demo` finds them; balances in TJS minor units (diram).
SOURCES = {
    "5f0e2c55-0000-4000-8000-000000000001": (
        "state_budget",
        "State budget: assistance to victims of trafficking",
        PURPOSES,
        5_000_000,
    ),
    "5f0e2c55-0000-4000-8000-000000000002": (
        "donor",
        "Donor fund for migrant return and legal aid (earmarked)",
        ("return_travel", "legal", "medical"),
        2_000_000,
    ),
}


async def load(session: AsyncSession) -> list[str]:
    for org_id, (_, sector) in ORGANIZATIONS.items():
        if await session.get(KnownOrganization, org_id) is None:
            await remember_organization(session, org_id, sector)
    for source_id, (kind, name, purposes, per_line) in SOURCES.items():
        if await session.get(Source, source_id) is not None:
            continue
        session.add(Source(id=source_id, kind=kind, name=name, currency="TJS", created_by=DEMO))
        await session.flush()
        for purpose in purposes:
            line = BudgetLine(
                id=str(uuid.uuid5(uuid.UUID(source_id), purpose)),
                source_id=source_id,
                purpose=purpose,
                currency="TJS",
                low_balance_minor=100_000,
            )
            session.add(line)
            await session.flush()
            ledger.open_accounts(session, line)
            await session.flush()
            await ledger.allocate(
                session,
                line.id,
                per_line,
                created_by=DEMO,
                reference="demo",
                value_date=date.today(),
            )
    lines = (await session.exec(select(BudgetLine.id))).all()
    return [f"fund: {len(SOURCES)} sources, {len(lines)} budget lines with TJS balances"]
