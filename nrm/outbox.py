"""Transactional outbox: events are rows written with the state change, then relayed.

Nothing is published from a transaction that rolls back; nothing committed is lost if
the process dies. A relay killed between publish and mark publishes again: consumers
deduplicate by event id (see inbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from opentelemetry import propagate
from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.bus.base import Bus, PublishFailed
from nrm.clock import utcnow
from nrm.db import Database, after_commit, commit_without_waiting_for_disk
from nrm.events import Event, envelope_for
from nrm.tasks import finish

log = logging.getLogger(__name__)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "published_at", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=36)
    type: str = Field(sa_type=String(200))
    body: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    published_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    attempts: int = Field(default=0, sa_type=Integer)
    last_error: str | None = Field(default=None, sa_type=String(500))


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def record_event(session: AsyncSession, event: Event) -> str:
    """Stage `event` in the caller's transaction; returns the event id."""
    envelope = envelope_for(event, traceparent=current_traceparent())
    session.add(OutboxMessage(id=envelope.id, type=envelope.type, body=envelope.to_json().decode()))
    waker = session.info.get(OutboxRelay.WAKE)
    if waker is not None:
        after_commit(session, waker)
    return envelope.id


class OutboxRelay:
    """Publishes committed outbox rows with confirms and marks them sent.

    Rows are claimed with FOR UPDATE SKIP LOCKED on PostgreSQL, so several relays
    share the work without publishing a row twice in steady state.
    """

    WAKE = "nrm.outbox.wake"

    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        batch_size: int = 100,
        idle_interval: float = 1.0,
        min_interval: float = 0.02,
        max_backoff: timedelta = timedelta(minutes=5),
    ) -> None:
        self.db = db
        self.bus = bus
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        # Under a steady stream of commits, each waking the relay, passes are spaced at
        # least this far apart, so one pass carries the events of several requests (a
        # pass costs about the same for one event as for fifty). A lone event after a
        # quiet spell goes at once.
        self.min_interval = min_interval
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._halt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, grace: float = 10.0) -> None:
        """Let the current pass finish (cancelling mid-transaction would strand its
        connection), then stop; cancel only if the pass overruns `grace` seconds."""
        if self._task is None:
            return
        self._stopping = True
        self._halt.set()
        self._wake.set()
        await finish(self._task, grace)
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_pass = loop.time()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_pass):
                    await self._halt.wait()  # the spacing; stop() ends it early
            if self._stopping:
                break
            next_pass = loop.time() + self.min_interval
            # Cleared before the pass: a commit during it wakes the next one, not the idle
            # timer a second later.
            self._wake.clear()
            try:
                relayed = await self.relay_once()
            except Exception:
                log.exception("outbox relay pass failed; retrying")
                relayed = 0
            if relayed < self.batch_size and not self._stopping:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that arrives as the wake-up does, and the relay would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.idle_interval):
                        await self._wake.wait()

    async def relay_once(self) -> int:
        """One pass: publish a batch of due rows; returns how many were published."""
        now = utcnow()
        published = 0
        async with self.db.transaction() as session:
            due = (
                select(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))  # type: ignore[union-attr]
                .where(OutboxMessage.next_attempt_at <= now)
                .order_by(OutboxMessage.created_at)  # type: ignore[arg-type]
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            for message in (await session.exec(due)).all():
                try:
                    await self.bus.publish(
                        message.type, message.body.encode(), message_id=message.id
                    )
                except PublishFailed as exc:
                    self._postpone(message, now, exc)
                    continue
                message.published_at = utcnow()
                published += 1
            if published:
                await commit_without_waiting_for_disk(session)
        return published

    def _postpone(self, message: OutboxMessage, now: datetime, exc: PublishFailed) -> None:
        message.attempts += 1
        message.last_error = str(exc)[:500]
        delay = min(timedelta(seconds=2**message.attempts), self.max_backoff)
        message.next_attempt_at = now + delay
        log.warning(
            "event %s (%s) not published, attempt %d: %s",
            message.id,
            message.type,
            message.attempts,
            exc,
        )
