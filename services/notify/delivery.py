"""The delivery worker: sends due deliveries, retries with backoff and jitter, then gives up.

Concurrency is bounded per webhook subscription and overall, so a receiver that hangs
holds only its own few slots (each bounded by a timeout) and never delays the others.
A pass leases due rows (and what sending them needs) in one transaction; outcomes are
written back in batches, so the database sees a few transactions, not three per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.clock import utcnow
from nrm.db import Database
from services.notify.channels.outcome import Outcome
from services.notify.config import NotifyConfig
from services.notify.models import Delivery, DeliveryAttempt, Recipient, WebhookSubscription
from services.notify.outbound import Allowlist
from services.notify.preferences import preferences_of, quiet_until
from services.notify.sending import Job, send

log = logging.getLogger(__name__)
_jitter = secrets.SystemRandom()


@dataclass(frozen=True)
class Channels:
    """What the adapters need, made once in the lifespan."""

    config: NotifyConfig
    secret_key: bytes
    allowlist: Allowlist
    require_https: bool
    mail_dir: Path
    http: httpx.AsyncClient


@dataclass(frozen=True)
class Result:
    delivery_id: str
    outcome: Outcome
    duration_ms: int


def backoff(config: NotifyConfig, attempts: int) -> timedelta:
    """Exponential, capped, with jitter so a receiver coming back is not hit all at once."""
    ceiling = min(config.retry_base_seconds * 2 ** (attempts - 1), config.retry_max_seconds)
    return timedelta(seconds=ceiling * _jitter.uniform(0.5, 1.0))


class DeliveryWorker:
    def __init__(self, db: Database, channels: Channels) -> None:
        self.db = db
        self.channels = channels
        self.config = channels.config
        self._wake = asyncio.Event()
        self._results_ready = asyncio.Event()
        self._results: list[Result] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._in_flight: set[str] = set()
        self._per_subscription: dict[str, int] = {}
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._dispatch_loop(), name="notify-dispatch"),
            asyncio.create_task(self._record_loop(), name="notify-record"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self._results_ready.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            try:
                while await self.dispatch_due():
                    pass
            except Exception:
                log.exception("delivery pass failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_seconds):
                    await self._wake.wait()

    async def _record_loop(self) -> None:
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            batch, self._results = self._results, []
            if batch:
                try:
                    async with self.db.transaction() as session:
                        await record_outcomes(session, self.config, batch)
                except Exception:
                    # The rows stay leased and pending: they are tried again when the lease ends.
                    log.exception("recording %d delivery outcomes failed", len(batch))
            if self._stopping and not self._results:
                return

    def _busy(self) -> set[str]:
        limit = self.config.webhook_concurrency_per_subscription
        return {sub for sub, count in self._per_subscription.items() if count >= limit}

    async def dispatch_due(self) -> int:
        """Lease due deliveries that have a free slot and start them; how many started."""
        free = self.config.delivery_concurrency - len(self._in_flight)
        if free <= 0 or self._stopping:
            return 0
        now = utcnow()
        lease = timedelta(seconds=self.config.webhook_timeout_seconds + 30)
        jobs: list[Job] = []
        async with self.db.transaction() as session:
            query = (
                select(Delivery)
                .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
                .where(col(Delivery.id).not_in(self._in_flight or {""}))
                .where(
                    or_(
                        col(Delivery.subscription_id).is_(None),
                        col(Delivery.subscription_id).not_in(self._busy() or {""}),
                    )
                )
                .order_by(col(Delivery.next_attempt_at))
                .limit(free)
                .with_for_update(skip_locked=True)
            )
            due = list((await session.exec(query)).all())
            subscriptions, recipients = await _targets(session, due)
            for delivery in due:
                if delivery.channel == "sms":
                    preferences = await preferences_of(session, delivery.org_id)
                    if (until := quiet_until(preferences, now)) is not None:
                        delivery.next_attempt_at = until  # not an attempt: just later
                        session.add(delivery)
                        continue
                if not self._take_slot(delivery):
                    continue
                delivery.next_attempt_at = now + lease  # other workers leave it alone
                session.add(delivery)
                jobs.append(
                    Job(
                        delivery_id=delivery.id,
                        channel=delivery.channel,
                        envelope=delivery.envelope,
                        subscription=subscriptions.get(delivery.subscription_id or ""),
                        recipient=recipients.get(delivery.target),
                    )
                )
        for job in jobs:
            task = asyncio.create_task(self._deliver(job))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(jobs)

    def _take_slot(self, delivery: Delivery) -> bool:
        sub = delivery.subscription_id
        if sub is not None:
            if (
                self._per_subscription.get(sub, 0)
                >= self.config.webhook_concurrency_per_subscription
            ):
                return False
            self._per_subscription[sub] = self._per_subscription.get(sub, 0) + 1
        self._in_flight.add(delivery.id)
        return True

    def _release_slot(self, job: Job) -> None:
        self._in_flight.discard(job.delivery_id)
        if job.subscription is not None:
            sub = job.subscription.id
            left = self._per_subscription.get(sub, 1) - 1
            if left > 0:
                self._per_subscription[sub] = left
            else:
                self._per_subscription.pop(sub, None)
        self._wake.set()

    async def _deliver(self, job: Job) -> None:
        started = time.monotonic()
        try:
            outcome = await send(self.channels, job)
        except Exception as exc:
            log.exception("delivery %s failed unexpectedly", job.delivery_id)
            outcome = Outcome(delivered=False, error=f"internal:{type(exc).__name__}"[:200])
        finally:
            self._release_slot(job)
        self._results.append(
            Result(job.delivery_id, outcome, int((time.monotonic() - started) * 1000))
        )
        self._results_ready.set()


async def _targets(
    session: AsyncSession, due: list[Delivery]
) -> tuple[dict[str, WebhookSubscription], dict[str, Recipient]]:
    sub_ids = {d.subscription_id for d in due if d.subscription_id}
    user_ids = {d.target for d in due if d.channel != "webhook"}
    subscriptions = (
        (
            await session.exec(
                select(WebhookSubscription).where(col(WebhookSubscription.id).in_(sub_ids))
            )
        ).all()
        if sub_ids
        else []
    )
    recipients = (
        (await session.exec(select(Recipient).where(col(Recipient.user_id).in_(user_ids)))).all()
        if user_ids
        else []
    )
    return {s.id: s for s in subscriptions}, {r.user_id: r for r in recipients}


async def record_outcomes(session: AsyncSession, config: NotifyConfig, batch: list[Result]) -> None:
    """Write each attempt to the log and move its delivery on: delivered, retry, or dead."""
    rows = await session.exec(
        select(Delivery).where(col(Delivery.id).in_([r.delivery_id for r in batch]))
    )
    deliveries = {d.id: d for d in rows.all()}
    gone: set[str] = set()
    for result in batch:
        delivery = deliveries.get(result.delivery_id)
        if delivery is None:
            continue
        record_outcome(session, config, delivery, result.outcome, duration_ms=result.duration_ms)
        if result.outcome.gone and delivery.subscription_id:
            gone.add(delivery.subscription_id)
    for subscription_id in gone:
        subscription = await session.get(WebhookSubscription, subscription_id)
        if subscription is not None:
            subscription.active = False
            subscription.disabled_reason = "receiver_gone"
            session.add(subscription)


def record_outcome(
    session: AsyncSession,
    config: NotifyConfig,
    delivery: Delivery,
    outcome: Outcome,
    *,
    duration_ms: int,
) -> None:
    now = utcnow()
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    if outcome.delivered:
        delivery.status, step = "delivered", "delivered"
        delivery.delivered_at = now
    elif outcome.gone or outcome.final or delivery.attempts >= config.max_attempts:
        delivery.status, step = "dead", "disabled" if outcome.gone else "dead"
    else:
        delivery.next_attempt_at = now + backoff(config, delivery.attempts)
        step = "retry"
    session.add(delivery)
    session.add(
        DeliveryAttempt(
            delivery_id=delivery.id,
            status_code=outcome.status_code,
            outcome=step,
            error=outcome.error,
            duration_ms=duration_ms,
        )
    )
