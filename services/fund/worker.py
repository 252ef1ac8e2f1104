"""The payout worker: pays approved provider disbursements, exactly once, across crashes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import and_, or_
from sqlmodel import col, select

from nrm.clock import utcnow
from nrm.db import Database
from services.fund import payees
from services.fund.config import FundSettings, fund_settings_of
from services.fund.models import Disbursement, FundRequest
from services.fund.payouts import (
    Outcome,
    PayoutOrder,
    PayoutProvider,
    ProviderUnreachable,
    settle,
)

log = logging.getLogger(__name__)
WORKER = "payout-worker"


class PayoutWorker:
    def __init__(
        self,
        db: Database,
        provider: PayoutProvider,
        settings: FundSettings,
        payee_key: bytes,
        *,
        clock: Callable[[], datetime] = utcnow,
        batch_size: int = 20,
    ) -> None:
        self.db = db
        self.provider = provider
        self.settings = settings
        self.payee_key = payee_key
        self.clock = clock
        self.batch_size = batch_size
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                done = await self.process_due()
            except Exception:
                log.exception("payout pass failed; retrying")
                done = 0
            if done < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.payout_poll_seconds):
                        await self._stopping.wait()

    def stop(self) -> None:
        self._stopping.set()

    async def process_due(self) -> int:
        """One pass: claim due disbursements, call the provider, settle what it answered."""
        claimed = await self._claim()
        for order, attempted_before in claimed:
            await self._pay(order, attempted_before)
        return len(claimed)

    async def _claim(self) -> list[tuple[PayoutOrder, bool]]:
        now = self.clock()
        lease = timedelta(seconds=self.settings.payout_lease_seconds)
        claimed: list[tuple[PayoutOrder, bool]] = []
        async with self.db.transaction() as session:
            due = (
                select(Disbursement, FundRequest)
                .join(FundRequest, col(FundRequest.id) == col(Disbursement.request_id))
                .where(
                    Disbursement.channel == "provider",
                    or_(
                        and_(
                            col(Disbursement.status) == "pending",
                            col(Disbursement.next_attempt_at) <= now,
                        ),
                        and_(
                            col(Disbursement.status) == "in_flight",
                            col(Disbursement.lease_until) <= now,
                        ),
                    ),
                )
                .order_by(col(Disbursement.next_attempt_at))
                .limit(self.batch_size)
                .with_for_update(skip_locked=True, of=Disbursement)
            )
            for disbursement, request in (await session.exec(due)).all():
                # In flight before means a call may have reached the provider: ask first.
                attempted_before = disbursement.status == "in_flight"
                disbursement.status = "in_flight"
                disbursement.attempts += 1
                disbursement.lease_until = now + lease
                session.add(disbursement)
                account = (
                    payees.unseal(request.payee_account_sealed, self.payee_key)
                    if request.payee_account_sealed
                    else None
                )
                order = PayoutOrder(
                    disbursement_id=disbursement.id,
                    amount_minor=disbursement.amount_minor,
                    currency=disbursement.currency,
                    method=request.payout_method,
                    account=account,
                )
                claimed.append((order, attempted_before))
        return claimed

    async def _pay(self, order: PayoutOrder, attempted_before: bool) -> None:
        try:
            outcome = (
                await self.provider.status(order.disbursement_id) if attempted_before else None
            )
            if outcome is None or outcome.status == "unknown":
                try:
                    outcome = await self.provider.pay(order)
                except ProviderUnreachable:
                    # Timed out or broke mid-call: it may have paid. Ask before any retry.
                    outcome = await self.provider.status(order.disbursement_id)
        except ProviderUnreachable as exc:
            log.warning("payout %s: provider unreachable (%s)", order.disbursement_id, exc)
            outcome = Outcome("pending")
        await self._record(order, outcome)

    async def _record(self, order: PayoutOrder, outcome: Outcome) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            query = select(Disbursement).where(Disbursement.id == order.disbursement_id)
            disbursement = (
                await session.exec(
                    query.with_for_update().execution_options(populate_existing=True)
                )
            ).first()
            if disbursement is None or disbursement.status != "in_flight":
                return  # someone else settled it meanwhile
            if outcome.status in ("paid", "failed"):
                await settle(
                    session,
                    disbursement,
                    paid=outcome.status == "paid",
                    by=WORKER,
                    now=now,
                    code=outcome.code,
                    reference=outcome.reference,
                )
                return
            if disbursement.attempts >= self.settings.payout_max_attempts:
                # Never voided on "unknown": right after a timeout the provider may not have
                # recorded a payment it is still making, and a void would let it be paid
                # twice. The money stays reserved until someone reconciles it with the
                # provider; retries go on (same idempotency key, so they cannot pay twice).
                log.error(
                    "payout %s unsettled after %d attempts: reconcile with the provider",
                    disbursement.id,
                    disbursement.attempts,
                )
            # Unsettled: leave it in flight, so the next try asks for its status first.
            backoff = min(2**disbursement.attempts, 300) * self.settings.payout_poll_seconds
            disbursement.lease_until = now + timedelta(seconds=backoff)
            session.add(disbursement)


def payout_worker(app: FastAPI) -> contextlib.AbstractAsyncContextManager[None]:
    @asynccontextmanager
    async def running() -> AsyncIterator[None]:
        settings = fund_settings_of(app)
        if not settings.payout_provider_url:
            yield
            return
        key = payees.payee_key(app.state.settings, settings)
        async with httpx.AsyncClient() as http:
            provider = PayoutProvider(
                settings.payout_provider_url, http, timeout=settings.payout_timeout_seconds
            )
            worker = PayoutWorker(app.state.db, provider, settings, key)
            task = asyncio.create_task(worker.run(), name="fund-payout-worker")
            try:
                yield
            finally:
                worker.stop()
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout=10)
                except TimeoutError:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

    return running()
