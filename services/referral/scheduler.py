"""The escalation scheduler: expires referrals past their SLA and re-routes them, once.

Several instances may run against one PostgreSQL: due rows are claimed with
FOR UPDATE SKIP LOCKED, and the expiry itself is a guarded UPDATE, so a referral
expires (and is re-routed) exactly once whichever instance gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI
from sqlmodel import col, select

from nrm.clock import utcnow
from nrm.db import Database
from services.referral.config import CLOCK_KEY, Clock, ReferralSettings, referral_settings
from services.referral.lifecycle import expire
from services.referral.models import Referral

log = logging.getLogger(__name__)


async def expire_overdue(
    db: Database, *, now: datetime, settings: ReferralSettings, batch: int = 100
) -> int:
    """One pass: expire and re-route up to `batch` overdue referrals; returns how many.

    One referral per transaction: its locks (referral, then services by id) are then
    always taken in the same order, and one failure does not undo the others.
    """
    expired = 0
    for _ in range(batch):
        async with db.transaction() as session:
            due = (
                select(Referral)
                .where(Referral.status == "pending", col(Referral.due_at) <= now)
                .order_by(col(Referral.due_at), col(Referral.id))
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            referral = (await session.exec(due)).first()
            if referral is None:
                break
            if await expire(session, referral, now=now, settings=settings):
                expired += 1
    return expired


@asynccontextmanager
async def escalation_scheduler(app: FastAPI) -> AsyncIterator[None]:
    """ServiceDefinition.background: runs passes every NRM_REFERRAL_SCHEDULER_INTERVAL s.

    `app.state.clock` (a callable returning aware UTC), when set, replaces the wall clock.
    """
    db: Database = app.state.db
    settings = referral_settings()
    # The same clock for the consumer's work (SLA deadlines of routed referrals).
    db.session_info[CLOCK_KEY] = lambda: getattr(app.state, "clock", utcnow)()
    stopping = asyncio.Event()

    async def run() -> None:
        while not stopping.is_set():
            clock: Clock = getattr(app.state, "clock", utcnow)
            try:
                while await expire_overdue(db, now=clock(), settings=settings):
                    pass
            except Exception:
                log.exception("escalation pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.scheduler_interval):
                    await stopping.wait()

    task = asyncio.create_task(run(), name="referral-escalation")
    try:
        yield
    finally:
        stopping.set()
        await task
