"""Intake's HTTP routes: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sqlmodel import select

from nrm.auth import CurrentPrincipal, Principal, require_roles
from nrm.clock import UtcDatetime
from nrm.db import SessionDep
from nrm.idempotency import IdempotencyDep
from nrm.paging import Cursor, Limit, Page
from nrm.vocabulary import CaseType, Urgency
from services.intake import access, queries, service
from services.intake.crypto import Keyring
from services.intake.models import Case, Consent, TimelineItem
from services.intake.schemas import (
    AccessLogEntry,
    AccessReasonCode,
    CaseClose,
    CaseCreate,
    CaseSummary,
    CaseUpdate,
    CaseView,
    ConsentIn,
    ConsentOut,
    DuplicateMatch,
    EraseReason,
    PingSent,
    TimelineEntry,
)

router = APIRouter()
Admin = Annotated[Principal, Depends(require_roles("admin"))]
Registrar = Annotated[Principal, Depends(require_roles("intake_officer", "case_worker"))]
# Why a person's data is being read or changed, written to the access log: a code.
AccessReason = Annotated[AccessReasonCode | None, Header(alias="X-Access-Reason")]
CASE = "/cases/{case_id}"


# Dependencies are coroutines: FastAPI runs a plain function in a worker thread, a
# thread hand-off per request for what is an attribute read.
async def _keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


KeyringDep = Annotated[Keyring, Depends(_keyring)]


async def _view(
    session: SessionDep, case: Case, projection: access.Projection, private: dict[str, Any]
) -> CaseView:
    person, situation, flags = access.project(
        projection,
        private.get("person") or {},
        {**case.situation_codes, "narrative": private.get("narrative")},
        case.flags,
    )
    consents = await session.exec(select(Consent).where(Consent.case_id == case.id))
    timeline = await session.exec(select(TimelineItem).where(TimelineItem.case_id == case.id))
    return CaseView(
        **queries.summary(case).model_dump(),
        projection=projection,
        person=person,
        situation=situation,
        flags=flags,
        consents=[ConsentOut.model_validate(c, from_attributes=True) for c in consents.all()]
        if projection in ("owner", "auditor")
        else [],
        timeline=[TimelineEntry.model_validate(t, from_attributes=True) for t in timeline.all()],
    )


@router.post("/diagnostics/pings", status_code=202, tags=["diagnostics"])
async def send_ping(admin: Admin, session: SessionDep, idempotency: IdempotencyDep) -> PingSent:
    """Send a ping event through the outbox; notify records its arrival."""
    ping_id = service.send_ping(session, org_id=admin.org)
    return await idempotency.remember(session, PingSent(ping_id=ping_id), status_code=202)


@router.post("/cases", status_code=201, tags=["cases"])
async def register_case(
    body: CaseCreate,
    principal: Registrar,
    session: SessionDep,
    keyring: KeyringDep,
    idempotency: IdempotencyDep,
) -> CaseSummary:
    """Register a presumed victim, a vulnerable migrant or a labour complaint.

    The answer carries the case id and its triage, not the personal data sent: it is
    kept for Idempotency-Key replays, and nothing personal may rest outside the case."""
    case = await service.register_case(session, keyring, principal, body)
    return await idempotency.remember(session, queries.summary(case))


@router.get("/cases", tags=["cases"])
async def list_cases(
    principal: CurrentPrincipal,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern="^(open|closed|erased)$")] = None,
    urgency: Urgency | None = None,
    case_type: CaseType | None = None,
    created_from: UtcDatetime | None = None,
    created_to: UtcDatetime | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[CaseSummary]:
    """Newest first; only cases the caller may see, and no personal data."""
    items, next_cursor = await queries.list_cases(
        session,
        principal,
        status=status,
        urgency=urgency,
        case_type=case_type,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get(CASE, tags=["cases"])
async def read_case(
    case_id: UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    keyring: KeyringDep,
    reason: AccessReason = None,
) -> CaseView:
    """The case as the caller's organisation may see it; the read is logged."""
    case, projection, private = await service.read_case(
        session, keyring, principal, str(case_id), reason
    )
    return await _view(session, case, projection, private)


@router.patch(CASE, tags=["cases"])
async def update_case(
    case_id: UUID,
    body: CaseUpdate,
    principal: Registrar,
    session: SessionDep,
    keyring: KeyringDep,
    reason: AccessReason = None,
) -> CaseView:
    """Change facts (triage runs again), or override the urgency with a reason."""
    case = await service.update_case(session, keyring, principal, str(case_id), body, reason)
    return await _view(session, case, "owner", service.open_private(keyring, case))


@router.post(CASE + "/consents", status_code=201, tags=["consent"])
async def add_consent(
    case_id: UUID, body: ConsentIn, principal: Registrar, session: SessionDep
) -> ConsentOut:
    consent = await service.add_consent(session, principal, str(case_id), body)
    return ConsentOut.model_validate(consent, from_attributes=True)


@router.post(CASE + "/consents/{consent_id}/withdraw", tags=["consent"])
async def withdraw_consent(
    case_id: UUID, consent_id: UUID, principal: Registrar, session: SessionDep
) -> ConsentOut:
    """Withdrawal ends the access it granted, at once, here and for referred providers."""
    consent = await service.withdraw_consent(session, principal, str(case_id), str(consent_id))
    return ConsentOut.model_validate(consent, from_attributes=True)


@router.post(CASE + "/close", tags=["cases"])
async def close_case(
    case_id: UUID, body: CaseClose, principal: Registrar, session: SessionDep
) -> CaseSummary:
    case = await service.close_case(session, principal, str(case_id), body.reason)
    return queries.summary(case)


@router.delete(CASE, status_code=204, tags=["cases"])
async def erase_case(
    case_id: UUID, reason: EraseReason, admin: Admin, session: SessionDep
) -> Response:
    """Erasure: the case's key is destroyed; a tombstone without personal data remains."""
    await service.erase_case(session, admin, str(case_id), reason)
    return Response(status_code=204)


@router.get(CASE + "/access-log", tags=["cases"])
async def access_log(
    case_id: UUID, principal: CurrentPrincipal, session: SessionDep
) -> list[AccessLogEntry]:
    """Who read or changed this case, for its owner and for auditors."""
    entries = await queries.access_log(session, principal, str(case_id))
    return [AccessLogEntry.model_validate(e, from_attributes=True) for e in entries]


@router.get(CASE + "/duplicates", tags=["cases"])
async def duplicates(
    case_id: UUID, principal: CurrentPrincipal, session: SessionDep
) -> list[DuplicateMatch]:
    """Possible matches; another organisation's is named only by whom to contact."""
    return await queries.duplicates(session, principal, str(case_id))
