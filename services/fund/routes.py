"""The fund's HTTP routes: parse, call the domain, shape the answer."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Request

from nrm.auth import Principal, require_roles
from nrm.clock import utcnow
from nrm.db import SessionDep
from nrm.idempotency import IdempotencyDep, RequiredIdempotencyDep
from nrm.paging import Cursor, Limit, Page
from services.fund import approvals, payees, payouts, requests, sources
from services.fund.config import FundSettings, fund_settings_of
from services.fund.schemas import (
    AllocationCreate,
    Approval,
    BalanceReport,
    CashHandover,
    EntryPublic,
    Rejection,
    RequestCreate,
    RequestPublic,
    SourceCreate,
    SourcePublic,
)

router = APIRouter(tags=["fund"])

FundOfficer = Annotated[Principal, Depends(require_roles("fund_officer"))]
Overseer = Annotated[
    Principal, Depends(require_roles("fund_officer", "commission_member", "auditor"))
]
LedgerReader = Annotated[Principal, Depends(require_roles("fund_officer", "auditor"))]
Requester = Annotated[
    Principal, Depends(require_roles("intake_officer", "case_worker", "fund_officer"))
]
Reader = Annotated[
    Principal,
    Depends(
        require_roles(
            "intake_officer", "case_worker", "fund_officer", "commission_member", "auditor"
        )
    ),
]
Decider = Annotated[Principal, Depends(require_roles("fund_officer", "commission_member"))]


async def _fund_settings(request: Request) -> FundSettings:
    return fund_settings_of(request.app)


Policy = Annotated[FundSettings, Depends(_fund_settings)]


@router.get("/sources")
async def list_sources(_: Overseer, session: SessionDep) -> Page[SourcePublic]:
    return Page(items=await sources.list_sources(session))


@router.post("/sources", status_code=201)
async def create_source(
    body: SourceCreate,
    officer: FundOfficer,
    policy: Policy,
    session: SessionDep,
    idempotency: IdempotencyDep,
) -> SourcePublic:
    created = await sources.create_source(session, body, by=officer, settings=policy)
    return await idempotency.remember(session, created)


@router.post("/sources/{source_id}/allocations", status_code=201)
async def allocate(
    source_id: UUID,
    body: AllocationCreate,
    officer: FundOfficer,
    session: SessionDep,
    idempotency: IdempotencyDep,
) -> SourcePublic:
    source = await sources.allocate(session, str(source_id), body, by=officer)
    return await idempotency.remember(session, source)


@router.get("/ledger")
async def ledger_entries(
    _: LedgerReader, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[EntryPublic]:
    items, next_cursor = await sources.ledger_page(session, limit=limit, cursor=cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/reports/balances")
async def balances(_: Overseer, session: SessionDep) -> BalanceReport:
    return await sources.balance_report(session)


@router.post("/requests", status_code=201)
async def submit_request(
    body: RequestCreate,
    requester: Requester,
    policy: Policy,
    request: Request,
    session: SessionDep,
    idempotency: RequiredIdempotencyDep,
) -> RequestPublic:
    key = payees.payee_key(request.app.state.settings, policy)
    submitted = await requests.submit(
        session, body, by=requester, settings=policy, payee_key=key, now=utcnow()
    )
    public = await requests.public(session, submitted)
    # A replay answers without the justification: free text must not rest in the key store.
    kept = public.model_copy(update={"justification": ""})
    return await idempotency.remember(session, public, stored=kept)


@router.get("/requests")
async def list_requests(
    reader: Reader, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[RequestPublic]:
    rows, next_cursor = await requests.page(session, reader, limit=limit, cursor=cursor)
    return Page(items=[await requests.public(session, r) for r in rows], next_cursor=next_cursor)


@router.get("/requests/{request_id}")
async def get_request(request_id: UUID, reader: Reader, session: SessionDep) -> RequestPublic:
    found = await requests.visible(session, str(request_id), reader)
    return await requests.public(session, found)


@router.post("/requests/{request_id}/approve")
async def approve(
    request_id: UUID,
    decider: Decider,
    policy: Policy,
    session: SessionDep,
    body: Annotated[Approval | None, Body()] = None,
) -> RequestPublic:
    line_id = str(body.line_id) if body and body.line_id else None
    decided = await approvals.approve(
        session, str(request_id), by=decider, settings=policy, line_id=line_id, now=utcnow()
    )
    return await requests.public(session, decided)


@router.post("/requests/{request_id}/reject")
async def reject(
    request_id: UUID, body: Rejection, decider: Decider, session: SessionDep
) -> RequestPublic:
    decided = await approvals.reject(
        session, str(request_id), by=decider, reason=body.reason, now=utcnow()
    )
    return await requests.public(session, decided)


@router.post("/requests/{request_id}/cash-handover")
async def cash_handover(
    request_id: UUID, body: CashHandover, officer: FundOfficer, session: SessionDep
) -> RequestPublic:
    paid = await payouts.record_cash_handover(
        session, str(request_id), by=officer, receipt_number=body.receipt_number, now=utcnow()
    )
    return await requests.public(session, paid)
