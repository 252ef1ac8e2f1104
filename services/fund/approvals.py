"""Deciding requests: maker-checker below the threshold, a commission quorum above it.

Approval reserves the amount on a budget line in the same transaction; the request row
is locked first, so two officers approving at once give one approval, not two.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import case
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.errors import Conflict, Forbidden, Invalid, NotFound
from nrm.outbox import record_event
from services.fund import ledger
from services.fund.config import FundSettings
from services.fund.events import RequestApproved, RequestRejected, SourceLowBalance
from services.fund.models import (
    BudgetLine,
    Disbursement,
    FundRequest,
    KnownOrganization,
    Source,
    Vote,
)

SECTORS_NEEDED = frozenset({"state", "civil_society"})


async def approve(
    session: AsyncSession,
    request_id: str,
    *,
    by: Principal,
    settings: FundSettings,
    line_id: str | None,
    now: datetime,
) -> FundRequest:
    request = await _pending_for_decision(session, request_id, by)
    if not request.needs_commission:
        _require(by, "fund_officer", "Requests up to the threshold are decided by a fund officer.")
        await _reserve_and_approve(session, request, by=by, settings=settings, line_id=line_id)
        request.decided_at = now
        return request
    _require(by, "commission_member", "Requests above the threshold are decided by the commission.")
    await _vote(session, request, by, decision="approve", reason=None)
    votes = (
        await session.exec(
            select(Vote).where(Vote.request_id == request.id, Vote.decision == "approve")
        )
    ).all()
    if len(votes) >= settings.commission_quorum and {v.sector for v in votes} >= SECTORS_NEEDED:
        await _reserve_and_approve(session, request, by=by, settings=settings, line_id=line_id)
        request.decided_at = now
    return request


async def reject(
    session: AsyncSession, request_id: str, *, by: Principal, reason: str, now: datetime
) -> FundRequest:
    request = await _pending_for_decision(session, request_id, by)
    if request.needs_commission:
        _require(
            by, "commission_member", "Requests above the threshold are decided by the commission."
        )
        await _vote(session, request, by, decision="reject", reason=reason)
    else:
        _require(by, "fund_officer", "Requests up to the threshold are decided by a fund officer.")
    request.status = "rejected"
    request.rejection_reason = reason
    request.decided_by = by.subject
    request.decided_at = now
    session.add(request)
    record_event(session, RequestRejected(**event_fields(request)))
    return request


async def _pending_for_decision(
    session: AsyncSession, request_id: str, by: Principal
) -> FundRequest:
    query = select(FundRequest).where(FundRequest.id == request_id).with_for_update()
    request = (await session.exec(query.execution_options(populate_existing=True))).first()
    if request is None:
        raise NotFound("No such request.")
    if request.status != "pending":
        raise Conflict(
            f"The request is already {request.status}.", extra={"status": request.status}
        )
    if request.submitted_by == by.subject:
        raise Forbidden("Maker-checker: whoever submitted a request cannot decide it.")
    return request


def _require(by: Principal, role: str, why: str) -> None:
    if not by.has_role(role):
        raise Forbidden(why)


async def _vote(
    session: AsyncSession, request: FundRequest, by: Principal, *, decision: str, reason: str | None
) -> None:
    organization = await session.get(KnownOrganization, by.org)
    if organization is None or not organization.active:
        raise Invalid(
            "The fund does not know your organisation's sector, so it cannot count a vote."
        )
    if await session.get(Vote, (request.id, by.subject)) is not None:
        raise Conflict("You have already voted on this request.")
    session.add(
        Vote(
            request_id=request.id,
            voter=by.subject,
            org_id=by.org,
            sector=organization.sector,
            decision=decision,
            reason=reason,
        )
    )
    await session.flush()


async def candidate_lines(
    session: AsyncSession, request: FundRequest, settings: FundSettings, line_id: str | None
) -> list[BudgetLine]:
    query = (
        select(BudgetLine)
        .join(Source, col(Source.id) == col(BudgetLine.source_id))
        .where(BudgetLine.purpose == request.purpose, BudgetLine.currency == request.currency)
    )
    if line_id is not None:
        chosen = (await session.exec(query.where(BudgetLine.id == line_id))).first()
        if chosen is None:
            raise Invalid("That budget line cannot pay this request (purpose or currency).")
        return [chosen]
    first = "donor" if settings.source_order == "donor_first" else "state_budget"
    order = case((col(Source.kind) == first, 0), else_=1)
    return list(
        (
            await session.exec(
                query.order_by(order, col(BudgetLine.created_at), col(BudgetLine.id))
            )
        ).all()
    )


async def _reserve_and_approve(
    session: AsyncSession,
    request: FundRequest,
    *,
    by: Principal,
    settings: FundSettings,
    line_id: str | None,
) -> None:
    for line in await candidate_lines(session, request, settings, line_id):
        available = await ledger.reserve(
            session, line.id, request.amount_minor, request_id=request.id, created_by=by.subject
        )
        if available is not None:
            break
    else:
        raise Conflict(
            "No budget line can cover this request; nothing was reserved.",
            extra={"needed_minor": request.amount_minor, "currency": request.currency},
        )
    request.status = "approved"
    request.line_id = line.id
    request.decided_by = by.subject
    session.add(request)
    session.add(
        Disbursement(
            id=str(uuid.uuid4()),
            request_id=request.id,
            line_id=line.id,
            amount_minor=request.amount_minor,
            currency=request.currency,
            channel="cash_office" if request.payout_method == "cash_office" else "provider",
            status="pending",
        )
    )
    record_event(session, RequestApproved(**event_fields(request)))
    if available < line.low_balance_minor <= available + request.amount_minor:
        record_event(
            session,
            SourceLowBalance(
                source_id=uuid.UUID(line.source_id),
                line_id=uuid.UUID(line.id),
                available_minor=available,
                currency=line.currency,
            ),
        )
    await session.flush()


def event_fields(request: FundRequest) -> dict[str, object]:
    return {
        "request_id": uuid.UUID(request.id),
        "case_id": uuid.UUID(request.case_id),
        "org_id": request.org_id,
        "amount_minor": request.amount_minor,
        "currency": request.currency,
        "purpose": request.purpose,
    }
