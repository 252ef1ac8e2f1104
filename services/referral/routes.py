"""Referral's HTTP routes: parse, call the domain, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request

from nrm.auth import CurrentPrincipal, Principal, require_roles
from nrm.clock import utcnow
from nrm.db import SessionDep
from nrm.idempotency import IdempotencyDep
from nrm.paging import Cursor, Limit, Page
from nrm.vocabulary import ServiceType
from services.referral import directory, lifecycle
from services.referral.config import ReferralSettings, referral_settings
from services.referral.matching import Need, rank_providers
from services.referral.schemas import (
    DirectoryPage,
    MatchPublic,
    OrganizationCreate,
    OrganizationPublic,
    ReferralAnswer,
    ReferralCreate,
    ReferralDecline,
    ReferralDetail,
    ReferralPublic,
    ReferralStatus,
    ScoreParts,
    ServiceCreate,
    ServicePublic,
    ServiceStatus,
    ServiceUpdate,
)

router = APIRouter()


async def _now(request: Request) -> datetime:
    # Tests may set `app.state.clock`; production uses the wall clock.
    now: datetime = getattr(request.app.state, "clock", utcnow)()
    return now


Now = Annotated[datetime, Depends(_now)]


async def _config() -> ReferralSettings:
    return referral_settings()


Config = Annotated[ReferralSettings, Depends(_config)]
Admin = Annotated[Principal, Depends(require_roles("admin"))]
Provider = Annotated[Principal, Depends(require_roles("admin", "provider"))]
Receiver = Annotated[Principal, Depends(require_roles(*lifecycle.RECEIVER_ROLES))]
Referrer = Annotated[Principal, Depends(require_roles("admin", "intake_officer", "case_worker"))]


@router.get("/organizations", tags=["directory"])
async def list_organizations(
    _: CurrentPrincipal, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> DirectoryPage[OrganizationPublic]:
    """Organisations in the directory (HSDS `organization`), with HSDS paging fields."""
    return await directory.list_organizations(session, limit=limit, cursor=cursor)


@router.post("/organizations", status_code=201, tags=["directory"])
async def create_organization(
    body: OrganizationCreate, _: Admin, session: SessionDep, idempotency: IdempotencyDep
) -> OrganizationPublic:
    org = await directory.create_organization(session, body)
    return await idempotency.remember(session, directory.organization_public(org))


@router.get("/services", tags=["directory"])
async def list_services(
    _: CurrentPrincipal,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    service_type: ServiceType | None = None,
    region: Annotated[str | None, Query(max_length=20)] = None,
    organization_id: Annotated[str | None, Query(max_length=100)] = None,
    status: ServiceStatus | None = None,
) -> DirectoryPage[ServicePublic]:
    """Services (HSDS `service`, with its location and capacity), with HSDS paging fields."""
    return await directory.list_services(
        session,
        limit=limit,
        cursor=cursor,
        service_type=service_type,
        region=region,
        organization_id=organization_id,
        status=status,
    )


@router.post("/services", status_code=201, tags=["directory"])
async def create_service(
    body: ServiceCreate,
    principal: Provider,
    session: SessionDep,
    now: Now,
    idempotency: IdempotencyDep,
) -> ServicePublic:
    service = await directory.create_service(session, principal, body, now)
    return await idempotency.remember(session, directory.service_public(service))


@router.patch("/services/{service_id}", tags=["directory"])
async def update_service(
    service_id: UUID, body: ServiceUpdate, principal: Provider, session: SessionDep, now: Now
) -> ServicePublic:
    """Capacity and status, kept up to date by the provider."""
    service = await directory.update_service(session, principal, str(service_id), body, now)
    return directory.service_public(service)


@router.get("/match", tags=["referrals"])
async def match(
    case_id: UUID,
    service_type: ServiceType,
    principal: Referrer,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[MatchPublic]:
    """Providers ranked for the case's need, with the parts of each score."""
    view = await lifecycle.visible_case(session, principal, str(case_id))
    matches = await rank_providers(session, Need.of_case(view, service_type), limit=limit)
    return [
        MatchPublic(
            service_id=m.service.id,
            organization_id=m.service.organization_id,
            service_name=m.service.name,
            service_type=m.service.service_type,
            region_code=m.service.region_code,
            district_code=m.service.district_code,
            capacity_available=m.service.capacity_available,
            score=m.score,
            parts=ScoreParts(
                region=m.region, language=m.language, capacity=m.capacity, sensitivity=m.sensitivity
            ),
        )
        for m in matches
    ]


@router.post("/referrals", status_code=201, tags=["referrals"])
async def create_referral(
    body: ReferralCreate,
    principal: Referrer,
    session: SessionDep,
    now: Now,
    settings: Config,
    idempotency: IdempotencyDep,
) -> ReferralPublic:
    referral = await lifecycle.refer_by_hand(session, principal, body, now=now, settings=settings)
    return await idempotency.remember(session, lifecycle.referral_public(referral))


@router.get("/referrals", tags=["referrals"])
async def list_referrals(
    principal: CurrentPrincipal,
    session: SessionDep,
    direction: Literal["incoming", "outgoing"] | None = None,
    status: ReferralStatus | None = None,
    case_id: UUID | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ReferralPublic]:
    rows, next_cursor = await lifecycle.list_referrals(
        session,
        principal,
        direction=direction,
        status=status,
        case_id=str(case_id) if case_id else None,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[lifecycle.referral_public(r) for r in rows], next_cursor=next_cursor)


@router.get("/referrals/{referral_id}", tags=["referrals"])
async def get_referral(
    referral_id: UUID, principal: CurrentPrincipal, session: SessionDep
) -> ReferralDetail:
    referral = await lifecycle.visible_referral(session, principal, str(referral_id))
    return await lifecycle.referral_detail(session, referral)


@router.post("/referrals/{referral_id}/accept", tags=["referrals"])
async def accept(
    referral_id: UUID,
    principal: Receiver,
    session: SessionDep,
    now: Now,
    settings: Config,
    body: ReferralAnswer | None = None,
) -> ReferralPublic:
    referral = await lifecycle.answer(
        session,
        principal,
        str(referral_id),
        "accept",
        now=now,
        settings=settings,
        reason=body.reason if body else None,
    )
    return lifecycle.referral_public(referral)


@router.post("/referrals/{referral_id}/decline", tags=["referrals"])
async def decline(
    referral_id: UUID,
    body: ReferralDecline,
    principal: Receiver,
    session: SessionDep,
    now: Now,
    settings: Config,
) -> ReferralPublic:
    referral = await lifecycle.answer(
        session,
        principal,
        str(referral_id),
        "decline",
        now=now,
        settings=settings,
        reason=body.reason,
    )
    return lifecycle.referral_public(referral)


@router.post("/referrals/{referral_id}/complete", tags=["referrals"])
async def complete(
    referral_id: UUID,
    principal: Receiver,
    session: SessionDep,
    now: Now,
    settings: Config,
    body: ReferralAnswer | None = None,
) -> ReferralPublic:
    referral = await lifecycle.answer(
        session,
        principal,
        str(referral_id),
        "complete",
        now=now,
        settings=settings,
        reason=body.reason if body else None,
    )
    return lifecycle.referral_public(referral)


@router.post("/referrals/{referral_id}/revoke", tags=["referrals"])
async def revoke(
    referral_id: UUID,
    principal: Referrer,
    session: SessionDep,
    now: Now,
    body: ReferralAnswer | None = None,
) -> ReferralPublic:
    referral = await lifecycle.revoke(
        session, principal, str(referral_id), now=now, reason=body.reason if body else None
    )
    return lifecycle.referral_public(referral)
