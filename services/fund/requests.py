"""Disbursement requests: submission under the fund's policy, and who may see them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.errors import Invalid, NotFound
from nrm.outbox import record_event
from nrm.paging import keyset_page
from services.fund import payees
from services.fund.config import FundSettings
from services.fund.events import RequestSubmitted
from services.fund.models import Disbursement, FundRequest, KnownCase, Vote
from services.fund.schemas import (
    DisbursementPublic,
    PayeePublic,
    RequestCreate,
    RequestPublic,
    VotePublic,
)
from services.fund.sources import check_currency

# Roles that see every request; anyone else sees only their own organisation's.
OVERSIGHT = ("fund_officer", "commission_member", "auditor")
COUNTED = ("pending", "approved", "paid")


async def submit(
    session: AsyncSession,
    body: RequestCreate,
    *,
    by: Principal,
    settings: FundSettings,
    payee_key: bytes,
    now: datetime,
) -> FundRequest:
    check_currency(body.currency, settings)
    if body.amount_minor > settings.request_max_minor:
        raise Invalid(
            f"A request may be at most {settings.request_max_minor} minor units.",
            extra={"max_minor": settings.request_max_minor},
        )
    case = await session.get(KnownCase, str(body.case_id), with_for_update=True)
    # Fund officers act for any case; others only for their own organisation's. Another
    # organisation's case is as unknown to them as a case that does not exist.
    if case is None or (case.org_id != by.org and not by.has_role("fund_officer")):
        raise NotFound("No such case.")
    if case.status != "open":
        raise Invalid(f"The case is {case.status}; the fund pays only open cases.")
    since = now - timedelta(days=settings.cap_period_days)
    already = (
        await session.exec(
            select(func.coalesce(func.sum(FundRequest.amount_minor), 0)).where(
                FundRequest.case_id == case.case_id,
                FundRequest.purpose == body.purpose,
                FundRequest.currency == body.currency,
                col(FundRequest.status).in_(COUNTED),
                FundRequest.created_at >= since,
            )
        )
    ).one()
    if int(already) + body.amount_minor > settings.case_purpose_cap_minor:
        raise Invalid(
            f"This would take the case over its {body.purpose} cap of "
            f"{settings.case_purpose_cap_minor} minor units in {settings.cap_period_days} days.",
            extra={"cap_minor": settings.case_purpose_cap_minor, "used_minor": int(already)},
        )
    account = body.payee.account
    request = FundRequest(
        id=str(uuid.uuid4()),
        case_id=case.case_id,
        org_id=by.org,
        submitted_by=by.subject,
        amount_minor=body.amount_minor,
        currency=body.currency,
        purpose=body.purpose,
        payee_kind=body.payee.kind,
        payee_org_id=body.payee.org_id,
        payout_method=body.payee.method,
        payee_account_sealed=payees.seal(account, payee_key) if account else None,
        payee_account_hint=payees.hint(account) if account else None,
        justification=body.justification,
        status="pending",
        needs_commission=body.amount_minor > settings.commission_threshold_minor,
        created_at=now,
    )
    session.add(request)
    record_event(
        session,
        RequestSubmitted(
            request_id=uuid.UUID(request.id),
            case_id=body.case_id,
            org_id=request.org_id,
            amount_minor=request.amount_minor,
            currency=request.currency,
            purpose=body.purpose,
            needs_commission=request.needs_commission,
        ),
    )
    await session.flush()
    return request


def sees_all(principal: Principal) -> bool:
    return principal.has_role(*OVERSIGHT)


async def visible(session: AsyncSession, request_id: str, principal: Principal) -> FundRequest:
    request = await session.get(FundRequest, request_id)
    if request is None or not (sees_all(principal) or request.org_id == principal.org):
        raise NotFound("No such request.")
    return request


async def page(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> tuple[list[FundRequest], str | None]:
    query = select(FundRequest)
    if not sees_all(principal):
        query = query.where(FundRequest.org_id == principal.org)
    return await keyset_page(session, query, FundRequest.id, limit=limit, cursor=cursor)


async def public(session: AsyncSession, request: FundRequest) -> RequestPublic:
    votes = (
        await session.exec(
            select(Vote).where(Vote.request_id == request.id).order_by(col(Vote.created_at))
        )
    ).all()
    disbursement = (
        await session.exec(select(Disbursement).where(Disbursement.request_id == request.id))
    ).first()
    return RequestPublic(
        id=uuid.UUID(request.id),
        case_id=uuid.UUID(request.case_id),
        org_id=request.org_id,
        amount_minor=request.amount_minor,
        currency=request.currency,
        purpose=request.purpose,
        payee=PayeePublic(
            kind=request.payee_kind,
            method=request.payout_method,
            org_id=request.payee_org_id,
            account_hint=request.payee_account_hint,
        ),
        justification=request.justification,
        status=request.status,
        needs_commission=request.needs_commission,
        line_id=uuid.UUID(request.line_id) if request.line_id else None,
        rejection_reason=request.rejection_reason,
        created_at=request.created_at,
        decided_at=request.decided_at,
        votes=[VotePublic.model_validate(vote, from_attributes=True) for vote in votes],
        disbursement=(
            DisbursementPublic(
                id=uuid.UUID(disbursement.id),
                channel=disbursement.channel,
                status=disbursement.status,
                attempts=disbursement.attempts,
                receipt_number=disbursement.receipt_number,
                failure_code=disbursement.failure_code,
                settled_at=disbursement.settled_at,
            )
            if disbursement
            else None
        ),
    )
