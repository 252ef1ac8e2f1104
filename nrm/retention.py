"""Bookkeeping rows are kept as long as they serve, then deleted: no table grows forever.

- outbox: a published event, after NRM_OUTBOX_RETENTION_HOURS (7 days by default);
  an unpublished one is never deleted, however old.
- inbox: the record that an event was handled, after NRM_INBOX_RETENTION_HOURS
  (30 days): far longer than a broker redelivers or a relay republishes.
- idempotency: a stored answer, after NRM_IDEMPOTENCY_RETENTION_HOURS (7 days): a
  client retrying later than that with the same key makes a new request.

Each component sweeps its own database every hour, in small batches so no sweep holds
locks for long; two instances sweeping at once only delete the same rows twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, delete, select, tuple_

from nrm.clock import utcnow
from nrm.db import Database
from nrm.idempotency import IdempotencyRecord
from nrm.inbox import InboxMessage
from nrm.outbox import OutboxMessage
from nrm.settings import Settings
from nrm.tasks import finish

log = logging.getLogger(__name__)

OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
INBOX: Table = InboxMessage.__table__  # type: ignore[attr-defined]
IDEMPOTENCY: Table = IdempotencyRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RetentionPolicy:
    outbox: timedelta
    inbox: timedelta
    idempotency: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            outbox=timedelta(hours=settings.outbox_retention_hours),
            inbox=timedelta(hours=settings.inbox_retention_hours),
            idempotency=timedelta(hours=settings.idempotency_retention_hours),
        )

    def expired(self, now: datetime) -> list[tuple[Table, ColumnElement[bool]]]:
        """Each table with the condition that makes one of its rows deletable now."""
        return [
            (OUTBOX, OUTBOX.c.published_at < now - self.outbox),  # NULL: never
            (INBOX, INBOX.c.received_at < now - self.inbox),
            (IDEMPOTENCY, IDEMPOTENCY.c.created_at < now - self.idempotency),
        ]


class RetentionSweeper:
    BATCH = 1_000

    def __init__(
        self,
        db: Database,
        policy: RetentionPolicy,
        *,
        interval: float = 3600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._policy = policy
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self, grace: float = 10.0) -> None:
        """Let a sweep under way finish its batch (a cancelled transaction can strand its
        connection), then stop; cancel only if it overruns `grace` seconds."""
        if self._task is None:
            return
        self._stopping.set()
        await finish(self._task, grace)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except Exception:
                log.exception("retention sweep failed; trying again next round")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._stopping.wait()

    async def sweep(self) -> dict[str, int]:
        """Delete every row past its time; how many, by table."""
        deleted: dict[str, int] = {}
        for table, expired in self._policy.expired(self._clock()):
            deleted[table.name] = 0
            while not self._stopping.is_set() and (
                count := await self._delete_batch(table, expired)
            ):
                deleted[table.name] += count
                if count < self.BATCH:
                    break
        if any(deleted.values()):
            log.info("retention: deleted %s", deleted)
        return deleted

    async def _delete_batch(self, table: Table, expired: ColumnElement[bool]) -> int:
        # By primary key in batches: one statement over a large backlog would hold its
        # locks (and SQLite's single writer) for as long as it takes.
        key = tuple_(*table.primary_key.columns)
        async with self._db.engine.begin() as connection:
            batch = select(*table.primary_key.columns).where(expired).limit(self.BATCH)
            keys = [tuple(row) for row in (await connection.execute(batch)).all()]
            if keys:
                await connection.execute(delete(table).where(key.in_(keys)))
        return len(keys)
