"""Referrals: routing a need to the best provider, and the small state machine after it.

    pending -> accepted -> completed
    pending -> declined | expired   (then re-routed to the next provider, or escalated)
    pending | accepted -> revoked   (referring org, consent withdrawn, case closed or erased)

Every transition is one guarded UPDATE (`WHERE status IN (...)`), so two concurrent
answers cannot both win, and a held shelter slot is given back exactly once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.errors import Conflict, Forbidden, NotFound
from nrm.outbox import record_event
from nrm.paging import keyset_page
from services.referral.config import ReferralSettings
from services.referral.directory import invalid, release_slot, reserve_slot
from services.referral.events import (
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralEscalated,
    ReferralRevoked,
)
from services.referral.matching import Match
from services.referral.models import CaseView, Organization, Referral, ReferralHistory, Service
from services.referral.routing import (
    SLOTTED,
    SYSTEM,
    Actor,
    escalate_to_commission,
    lock_for_rerouting,
    open_referral,
    record_history,
    route_need,
)
from services.referral.schemas import (
    HistoryEntry,
    ReferralCreate,
    ReferralDetail,
    ReferralPublic,
)
from services.referral.views import has_referral_consent

Action = Literal["accept", "decline", "complete", "revoke", "expire"]
TRANSITIONS: dict[Action, tuple[tuple[str, ...], str]] = {
    "accept": (("pending",), "accepted"),
    "decline": (("pending",), "declined"),
    "complete": (("accepted",), "completed"),
    "revoke": (("pending", "accepted"), "revoked"),
    "expire": (("pending",), "expired"),
}
ENDED = frozenset({"declined", "expired", "completed", "revoked"})
OPEN = ("pending", "accepted")
RECEIVER_ROLES = ("provider", "system")
OVERSEERS = ("admin", "auditor")


async def _transition(
    session: AsyncSession,
    referral: Referral,
    action: Action,
    *,
    actor: Actor,
    now: datetime,
    reason: str | None = None,
) -> bool:
    """Apply `action` if the referral is still in a state that allows it."""
    allowed, target = TRANSITIONS[action]
    if referral.status not in allowed:
        return False
    ends = target in ENDED
    # Read before the UPDATE: the ORM synchronises the loaded object with it.
    gives_back = ends and referral.holds_slot and referral.service_id is not None
    result = await session.exec(
        update(Referral)
        .where(col(Referral.id) == referral.id, col(Referral.status).in_(allowed))
        .values(
            status=target,
            reason=reason,
            updated_at=now,
            holds_slot=False if ends else col(Referral.holds_slot),
        )
    )
    if not result.rowcount:
        return False
    if gives_back and referral.service_id is not None:
        await release_slot(session, referral.service_id)
    await session.refresh(referral)
    record_history(session, referral, actor, action, now)
    event_class = {
        "accept": ReferralAccepted,
        "decline": ReferralDeclined,
        "complete": ReferralCompleted,
        "revoke": ReferralRevoked,
    }.get(action)
    if event_class is not None and referral.to_org is not None:
        record_event(
            session,
            event_class(
                referral_id=UUID(referral.id),
                case_id=UUID(referral.case_id),
                from_org=referral.from_org,
                to_org=referral.to_org,
                service_type=referral.service_type,
                reason=reason,
            ),
        )
    return True


async def _reroute(
    session: AsyncSession,
    referral: Referral,
    *,
    now: datetime,
    settings: ReferralSettings,
    escalate: bool,
    candidates: list[Match] | None,
) -> Referral | None:
    view = await session.get(CaseView, referral.case_id)
    if view is None or view.status != "open":
        return None
    if not has_referral_consent(view, referral.service_type):
        return None
    if referral.attempt >= settings.max_attempts:
        return await escalate_to_commission(
            session,
            view=view,
            service_type=referral.service_type,
            from_org=referral.from_org,
            previous=referral,
            attempt=referral.attempt,
            now=now,
        )
    following = await route_need(
        session,
        view,
        referral.service_type,
        from_org=referral.from_org,
        now=now,
        settings=settings,
        previous=referral,
        candidates=candidates,
    )
    if escalate and following.status == "pending":
        record_history(session, referral, SYSTEM, "escalated", now)
        record_event(
            session,
            ReferralEscalated(
                referral_id=UUID(referral.id),
                case_id=UUID(referral.case_id),
                from_org=referral.from_org,
                service_type=referral.service_type,
                level=referral.attempt,
                next_org=following.to_org,
            ),
        )
    return following


async def expire(
    session: AsyncSession, referral: Referral, *, now: datetime, settings: ReferralSettings
) -> bool:
    """A provider did not answer in time: expire, re-route, tell someone (once)."""
    candidates = await lock_for_rerouting(session, referral)
    if not await _transition(session, referral, "expire", actor=SYSTEM, now=now, reason="sla"):
        return False
    await _reroute(
        session, referral, now=now, settings=settings, escalate=True, candidates=candidates
    )
    return True


def _visible(principal: Principal, referral: Referral) -> bool:
    return principal.has_role(*OVERSEERS) or principal.org in (referral.from_org, referral.to_org)


async def visible_referral(
    session: AsyncSession, principal: Principal, referral_id: str
) -> Referral:
    referral = await session.get(Referral, referral_id)
    if referral is None or not _visible(principal, referral):
        raise NotFound("No such referral.")
    return referral


async def answer(
    session: AsyncSession,
    principal: Principal,
    referral_id: str,
    action: Literal["accept", "decline", "complete"],
    *,
    now: datetime,
    settings: ReferralSettings,
    reason: str | None = None,
) -> Referral:
    """The receiving organisation's provider accepts, declines or completes."""
    referral = await visible_referral(session, principal, referral_id)
    if principal.org != referral.to_org or not principal.has_role(*RECEIVER_ROLES):
        raise Forbidden("Only the receiving organisation's providers may answer a referral.")
    candidates = None if action == "accept" else await lock_for_rerouting(session, referral)
    if not await _transition(
        session, referral, action, actor=Actor.of(principal), now=now, reason=reason
    ):
        raise Conflict(f"A referral that is {referral.status} cannot be answered so.")
    if action == "decline":
        await _reroute(
            session, referral, now=now, settings=settings, escalate=False, candidates=candidates
        )
    return referral


async def revoke(
    session: AsyncSession,
    principal: Principal,
    referral_id: str,
    *,
    now: datetime,
    reason: str | None = None,
) -> Referral:
    referral = await visible_referral(session, principal, referral_id)
    if principal.org != referral.from_org or principal.has_role("auditor"):
        raise Forbidden("Only the referring organisation may revoke a referral.")
    if not await _transition(
        session, referral, "revoke", actor=Actor.of(principal), now=now, reason=reason or "revoked"
    ):
        raise Conflict(f"A referral that is {referral.status} cannot be revoked.")
    return referral


async def revoke_for_case(
    session: AsyncSession,
    case_id: str,
    *,
    reason: str,
    now: datetime,
    service_types: set[str] | None = None,
) -> int:
    """Revoke the case's open referrals (all, or of some service types)."""
    query = select(Referral).where(Referral.case_id == case_id, col(Referral.status).in_(OPEN))
    if service_types is not None:
        query = query.where(col(Referral.service_type).in_(sorted(service_types)))
    revoked = 0
    for referral in (await session.exec(query.order_by(col(Referral.id)))).all():
        if await _transition(session, referral, "revoke", actor=SYSTEM, now=now, reason=reason):
            revoked += 1
    return revoked


async def visible_case(session: AsyncSession, principal: Principal, case_id: str) -> CaseView:
    view = await session.get(CaseView, case_id)
    if view is None or not view.registered:
        raise NotFound("No such case.", extra={"field": "case_id"})
    if not principal.has_role("admin") and view.org_id != principal.org:
        raise NotFound("No such case.", extra={"field": "case_id"})
    return view


async def refer_by_hand(
    session: AsyncSession,
    principal: Principal,
    body: ReferralCreate,
    *,
    now: datetime,
    settings: ReferralSettings,
) -> Referral:
    view = await visible_case(session, principal, str(body.case_id))
    service = await session.get(Service, str(body.service_id))
    if service is None:
        raise invalid("service_id", "No such service in the directory.")
    organization = await session.get(Organization, service.organization_id)
    if service.status != "active" or organization is None or not organization.active:
        raise Conflict("The service is not active.", extra={"field": "service_id"})
    if view.status != "open":
        raise Conflict("The case is not open.", extra={"field": "case_id"})
    if not has_referral_consent(view, service.service_type):
        raise Conflict(
            "The person has not consented to a referral of this type.",
            extra={"field": "service_id"},
        )
    slotted = service.service_type in SLOTTED
    if slotted and not await reserve_slot(session, service.id):
        raise Conflict("The service has no free place.", extra={"field": "service_id"})
    return await open_referral(
        session,
        view=view,
        service=service,
        from_org=view.org_id or principal.org,
        urgency=body.urgency or view.urgency,
        holds_slot=slotted,
        actor=Actor.of(principal),
        now=now,
        settings=settings,
    )


def referral_public(referral: Referral) -> ReferralPublic:
    return ReferralPublic.model_validate(referral, from_attributes=True)


async def referral_detail(session: AsyncSession, referral: Referral) -> ReferralDetail:
    rows = await session.exec(
        select(ReferralHistory)
        .where(ReferralHistory.referral_id == referral.id)
        .order_by(col(ReferralHistory.id))
    )
    history = [HistoryEntry.model_validate(h, from_attributes=True) for h in rows.all()]
    return ReferralDetail(**referral_public(referral).model_dump(), history=history)


async def list_referrals(
    session: AsyncSession,
    principal: Principal,
    *,
    direction: Literal["incoming", "outgoing"] | None,
    status: str | None,
    case_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Referral], str | None]:
    query = select(Referral)
    if direction == "incoming":
        query = query.where(Referral.to_org == principal.org)
    elif direction == "outgoing":
        query = query.where(Referral.from_org == principal.org)
    elif not principal.has_role(*OVERSEERS):
        query = query.where(
            (col(Referral.to_org) == principal.org) | (col(Referral.from_org) == principal.org)
        )
    if status is not None:
        query = query.where(Referral.status == status)
    if case_id is not None:
        query = query.where(Referral.case_id == case_id)
    return await keyset_page(session, query, col(Referral.id), limit=limit, cursor=cursor)
