"""Under real concurrency on PostgreSQL: places never go negative, expiry happens once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from nrm.auth import Principal
from nrm.clock import utcnow
from nrm.db import Database
from nrm.errors import Conflict
from nrm.outbox import OutboxMessage
from services.referral.config import ReferralSettings
from services.referral.lifecycle import answer
from services.referral.models import Referral, Service
from services.referral.scheduler import expire_overdue
from tests.referral.conftest import add_service, deliver, registered
from tests.support import PostgresDatabases, migrated_database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg(postgres: PostgresDatabases) -> AsyncIterator[Database]:
    db = await migrated_database(await postgres.create("referral"), "referral")
    yield db
    await db.dispose()


def _provider(org: str) -> Principal:
    return Principal(f"user@{org}", org, frozenset({"provider"}), frozenset(), "jti")


async def _pending(db: Database) -> list[Referral]:
    async with db.transaction() as session:
        rows = await session.exec(select(Referral).where(Referral.status == "pending"))
        return list(rows.all())


async def _check_places(db: Database) -> None:
    """Every service's free places = total - referrals holding one; never below zero."""
    async with db.transaction() as session:
        for service in (await session.exec(select(Service))).all():
            held = (
                await session.exec(
                    select(func.count()).where(
                        Referral.service_id == service.id, col(Referral.holds_slot).is_(True)
                    )
                )
            ).one()
            assert 0 <= service.capacity_available <= service.capacity_total
            assert service.capacity_available == service.capacity_total - held, service.name


async def test_capacity_never_negative_under_50_concurrent_accepts_and_declines(
    pg: Database,
) -> None:
    await add_service(pg, "shelter-a", capacity=25)
    await add_service(pg, "shelter-b", place="TJ-RA-VAH", capacity=5)
    await add_service(pg, "shelter-c", place="TJ-SU-KHU", capacity=4)
    for _ in range(25):
        await deliver(pg, registered())
    referrals = await _pending(pg)
    assert len(referrals) == 25
    settings = ReferralSettings()
    outcomes: list[str] = []

    async def act(referral: Referral, action: str) -> None:
        try:
            async with pg.transaction() as session:
                await answer(
                    session,
                    _provider(referral.to_org or ""),
                    referral.id,
                    action,  # type: ignore[arg-type]
                    now=utcnow(),
                    settings=settings,
                    reason="full" if action == "decline" else None,
                )
            outcomes.append(action)
        except Conflict:
            outcomes.append("conflict")

    await asyncio.gather(*(act(r, action) for r in referrals for action in ("accept", "decline")))

    assert outcomes.count("conflict") == 25  # exactly one answer per referral won
    await _check_places(pg)
    async with pg.transaction() as session:
        statuses = (await session.exec(select(Referral.status))).all()
    declined = outcomes.count("decline")
    assert statuses.count("declined") == declined
    # Each decline was re-routed to a free place (9 of them) or escalated to the commission.
    assert statuses.count("pending") == min(declined, 9)


async def _drain(db: Database, now: datetime, settings: ReferralSettings) -> int:
    """A scheduler instance's passes until it finds nothing due."""
    total = 0
    while expired := await expire_overdue(db, now=now, settings=settings, batch=3):
        total += expired
    return total


async def test_two_schedulers_on_one_database_never_double_expire(
    pg: Database,
) -> None:
    other = Database(pg.url)  # a second instance of the service
    for index in range(12):  # enough providers to re-route every round
        await add_service(pg, f"shelter-{index}", capacity=500)
    settings = ReferralSettings(max_attempts=20)
    now = utcnow()
    try:
        for round_ in range(10):
            for _ in range(5):
                await deliver(pg, registered())
            due = {r.id for r in await _pending(pg)}
            now += timedelta(days=8)
            counts = await asyncio.gather(
                *(_drain(db, now, settings) for db in (pg, other, pg, other))
            )
            async with pg.transaction() as session:
                expired = (
                    await session.exec(select(Referral).where(col(Referral.id).in_(due)))
                ).all()
                successors = (
                    await session.exec(
                        select(Referral.previous_id).where(col(Referral.previous_id).in_(due))
                    )
                ).all()
            assert sum(counts) == len(due), round_
            assert {r.status for r in expired} == {"expired"}, round_
            assert sorted(s or "" for s in successors) == sorted(due), (
                round_
            )  # re-routed exactly once each
        async with pg.transaction() as session:
            total_expired = (
                await session.exec(select(func.count()).where(Referral.status == "expired"))
            ).one()
            escalations = (
                await session.exec(
                    select(func.count()).where(
                        OutboxMessage.type == "nrm.referral.referral.escalated.v1"
                    )
                )
            ).one()
        assert escalations == total_expired
        await _check_places(pg)
    finally:
        await other.dispose()


async def test_an_expiry_racing_an_accept_has_one_winner(pg: Database) -> None:
    await add_service(pg, "shelter-a", capacity=30)
    await add_service(pg, "shelter-b", capacity=30)
    for _ in range(20):
        await deliver(pg, registered())
    referrals = await _pending(pg)
    settings = ReferralSettings()
    later = utcnow() + timedelta(days=8)

    async def accept(referral: Referral) -> bool:
        try:
            async with pg.transaction() as session:
                await answer(
                    session,
                    _provider(referral.to_org or ""),
                    referral.id,
                    "accept",
                    now=later,
                    settings=settings,
                )
        except Conflict:
            return False
        return True

    results = await asyncio.gather(
        expire_overdue(pg, now=later, settings=settings), *(accept(r) for r in referrals)
    )
    expired_count, accepted = results[0], results[1:]
    assert referrals, "the race needs referrals to race over"
    assert expired_count + sum(1 for a in accepted if a) == len(referrals)
    await _check_places(pg)
