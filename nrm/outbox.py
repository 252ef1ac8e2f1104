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

from opentelemetry import trace
from sqlalchemy import (
    DateTime,
    Index,
    Integer,
    String,
    Text,
    Update,
    bindparam,
    select,
    update,
)
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.bus.base import Bus, PublishFailed
from nrm.clock import utcnow
from nrm.db import Database, after_commit, commit_without_waiting_for_disk, new_row
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
    """The current span as a W3C traceparent, the envelope's tracing field (formatted as
    the W3C propagator formats it, without a pass through every configured propagator)."""
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return None
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"


def record_event(session: AsyncSession, event: Event) -> str:
    """Stage `event` in the caller's transaction; returns the event id."""
    envelope = envelope_for(event, traceparent=current_traceparent())
    session.add(
        new_row(OutboxMessage, id=envelope.id, type=envelope.type, body=envelope.to_json().decode())
    )
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
        min_interval: float = 0.1,
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
        """One pass: publish a batch of due rows; returns how many were published.

        Rows are read (locked against other relays on PostgreSQL), published, then marked:
        sent ones in one statement, refused ones with their next attempt. Writes come
        after the publishing: on SQLite the first write takes the database's only write
        lock, which must not wait on the broker. A pass cut short leaves every row as it
        was. Core statements on a connection, not ORM objects: under load a pass runs
        every few requests."""
        now = utcnow()
        sent: list[str] = []
        refused: list[Update] = []
        async with self.db.engine.begin() as connection:
            due = await connection.execute(_DUE, {"now": now, "limit": self.batch_size})
            for message_id, event_type, body, attempts in due.all():
                try:
                    await self.bus.publish(event_type, body.encode(), message_id=message_id)
                except PublishFailed as exc:
                    refused.append(self._postponed(message_id, event_type, attempts, now, exc))
                    continue
                sent.append(message_id)
            if sent:
                await commit_without_waiting_for_disk(connection)
                await connection.execute(_SENT, {"ids": sent, "at": utcnow()})
            for postponed in refused:
                await connection.execute(postponed)
        return len(sent)

    def _postponed(
        self, message_id: str, event_type: str, attempts: int, now: datetime, exc: PublishFailed
    ) -> Update:
        attempts += 1
        log.warning(
            "event %s (%s) not published, attempt %d: %s", message_id, event_type, attempts, exc
        )
        return (
            update(_OUTBOX)
            .where(_OUTBOX.c.id == message_id)
            .values(
                attempts=attempts,
                last_error=str(exc)[:500],
                next_attempt_at=now + min(timedelta(seconds=2**attempts), self.max_backoff),
            )
        )


_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
# The oldest due rows; on PostgreSQL locked, and skipped by other relays, until the commit.
_DUE = (
    select(_OUTBOX.c.id, _OUTBOX.c.type, _OUTBOX.c.body, _OUTBOX.c.attempts)
    .where(_OUTBOX.c.published_at.is_(None), _OUTBOX.c.next_attempt_at <= bindparam("now"))
    .order_by(_OUTBOX.c.created_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("at"))
)
