"""The demo data: two funded sources and the demo organisations' sectors, loaded idempotently."""

from __future__ import annotations

from sqlmodel import select

from nrm.db import Database
from nrm.runner import migrate
from nrm.settings import Settings
from services.fund import demo, sources
from services.fund.models import KnownOrganization


async def test_the_demo_loader_is_idempotent_and_funds_two_sources(settings: Settings) -> None:
    await migrate(settings, ["fund"])
    db = Database(settings.database_url("fund"))
    try:
        for _ in range(2):
            async with db.transaction() as session:
                await demo.load(session)
        async with db.transaction() as session:
            listed = await sources.list_sources(session)
            sectors = dict(
                (
                    await session.exec(select(KnownOrganization.org_id, KnownOrganization.sector))
                ).all()
            )
    finally:
        await db.dispose()
    assert sorted(s.kind for s in listed) == ["donor", "state_budget"]
    assert all(
        line.available_minor > 0 and line.currency == "TJS" for s in listed for line in s.lines
    )
    assert (
        sum(line.allocated_minor for s in listed for line in s.lines)
        == 6 * 5_000_000 + 3 * 2_000_000
    )
    assert sectors["ngo-migrant-support"] == "civil_society"
    assert sectors["ministry-interior"] == "state"
