"""When intake erases a case, the fund stops paying it and forgets what it held of the person.

Erasure means the person's data must be unreadable everywhere: here, the payout account
and what staff typed (the justification, a rejection's reason, commission votes'
reasons). What has not been paid is not paid (a case registered in error must not draw
money; a person who asked to be forgotten can be registered again). One exception: a
payout already handed to the provider may be paid whatever we do now, and voiding it
could pay it twice in the ledger's eyes, so it settles as the provider says and its
account is forgotten when it does.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.outbox import record_event
from services.fund.approvals import event_fields
from services.fund.events import RequestRejected
from services.fund.models import Disbursement, FundRequest, Vote
from services.fund.payees import forget_payee
from services.fund.payouts import settle

BY = "case-erasure"
REASON = "case_erased"


async def stop_paying(session: AsyncSession, case_id: str, *, now: datetime) -> None:
    query = select(FundRequest).where(FundRequest.case_id == case_id).with_for_update()
    requests = (await session.exec(query.execution_options(populate_existing=True))).all()
    # Commission members' reasons are typed text about the person too.
    votes = update(Vote).where(col(Vote.request_id).in_([r.id for r in requests]))
    await session.exec(votes.values(reason=None))
    for request in requests:
        disbursement = await _disbursement(session, request.id)
        if disbursement is None or disbursement.status != "in_flight":
            forget_payee(request)  # an in-flight one forgets when it settles (payouts.py)
        if request.status == "pending":
            request.status, request.rejection_reason = "rejected", REASON
            request.decided_by, request.decided_at = BY, now
            record_event(session, RequestRejected(**event_fields(request)))
        if disbursement is not None and disbursement.status == "pending":
            await settle(session, disbursement, paid=False, by=BY, now=now, code=REASON)
        session.add(request)


async def _disbursement(session: AsyncSession, request_id: str) -> Disbursement | None:
    query = select(Disbursement).where(Disbursement.request_id == request_id).with_for_update()
    return (await session.exec(query.execution_options(populate_existing=True))).first()
