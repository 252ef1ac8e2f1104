"""Routing a need to the best provider not yet tried, or to the commission when none is left."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.outbox import record_event
from services.referral.config import ReferralSettings
from services.referral.directory import reserve_slot
from services.referral.events import ReferralCreated, ReferralEscalated
from services.referral.matching import Match, Need, rank_providers
from services.referral.models import CaseView, Referral, ReferralHistory, Service

# Service types whose places are counted: a referral holds one until it ends.
SLOTTED = frozenset({"shelter"})


@dataclass(frozen=True)
class Actor:
    subject: str
    org: str | None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.subject, principal.org)


SYSTEM = Actor("system", None)


def record_history(
    session: AsyncSession, referral: Referral, actor: Actor, action: str, now: datetime
) -> None:
    session.add(
        ReferralHistory(
            referral_id=referral.id,
            at=now,
            actor=actor.subject,
            actor_org=actor.org,
            action=action,
            status=referral.status,
            reason=referral.reason,
        )
    )


async def open_referral(
    session: AsyncSession,
    *,
    view: CaseView,
    service: Service,
    from_org: str,
    urgency: str,
    holds_slot: bool,
    actor: Actor,
    now: datetime,
    settings: ReferralSettings,
    attempt: int = 1,
    previous_id: str | None = None,
) -> Referral:
    due_at = now + settings.sla(urgency)  # type: ignore[arg-type]
    referral = Referral(
        id=str(uuid.uuid4()),
        case_id=view.case_id,
        from_org=from_org,
        to_org=service.organization_id,
        service_id=service.id,
        service_type=service.service_type,
        urgency=urgency,
        status="pending",
        attempt=attempt,
        previous_id=previous_id,
        holds_slot=holds_slot,
        due_at=due_at,
        created_at=now,
        updated_at=now,
    )
    session.add(referral)
    record_history(session, referral, actor, "created", now)
    record_event(
        session,
        ReferralCreated(
            referral_id=UUID(referral.id),
            case_id=UUID(view.case_id),
            from_org=from_org,
            to_org=service.organization_id,
            service_type=service.service_type,
            urgency=urgency,
            due_at=due_at,
        ),
    )
    await session.flush()
    return referral


async def escalate_to_commission(
    session: AsyncSession,
    *,
    view: CaseView,
    service_type: str,
    from_org: str,
    previous: Referral | None,
    attempt: int,
    now: datetime,
) -> Referral:
    """Nobody (left) to route to: the commission is told instead of looping."""
    if previous is None:
        # A record the referring organisation sees in its outgoing list, to_org empty.
        previous = Referral(
            id=str(uuid.uuid4()),
            case_id=view.case_id,
            from_org=from_org,
            service_type=service_type,
            urgency=view.urgency,
            status="escalated",
            attempt=attempt,
            reason="no_provider",
            created_at=now,
            updated_at=now,
        )
        session.add(previous)
    record_history(session, previous, SYSTEM, "escalated", now)
    record_event(
        session,
        ReferralEscalated(
            referral_id=UUID(previous.id),
            case_id=UUID(view.case_id),
            from_org=from_org,
            service_type=service_type,
            level=attempt,
            next_org=None,
        ),
    )
    await session.flush()
    return previous


async def _candidates(session: AsyncSession, view: CaseView, service_type: str) -> list[Match]:
    """Providers ranked for the need, leaving out those already tried for this case."""
    tried = (
        await session.exec(
            select(Referral.service_id).where(
                Referral.case_id == view.case_id,
                Referral.service_type == service_type,
                col(Referral.service_id).is_not(None),
            )
        )
    ).all()
    return await rank_providers(
        session,
        Need.of_case(view, service_type),
        limit=10,
        exclude=[s for s in tried if s is not None],
        require_free_slot=service_type in SLOTTED,
    )


async def lock_for_rerouting(session: AsyncSession, referral: Referral) -> list[Match] | None:
    """Take row locks in one global order: the referral, then its service and every
    candidate it may be re-routed to, by id. Two concurrent re-routings that give a
    place back in one shelter and take one in another then cannot deadlock. Returns
    the locked candidates: re-routing must choose among them, not rank afresh."""
    await session.exec(select(Referral.id).where(Referral.id == referral.id).with_for_update())
    if referral.service_type not in SLOTTED:
        return None
    ids = {referral.service_id} if referral.service_id else set()
    view = await session.get(CaseView, referral.case_id)
    candidates = [] if view is None else await _candidates(session, view, referral.service_type)
    ids |= {m.service.id for m in candidates}
    await session.exec(
        select(Service.id)
        .where(col(Service.id).in_(sorted(ids)))
        .order_by(col(Service.id))
        .with_for_update()
    )
    return candidates


async def route_need(
    session: AsyncSession,
    view: CaseView,
    service_type: str,
    *,
    from_org: str,
    now: datetime,
    settings: ReferralSettings,
    actor: Actor = SYSTEM,
    previous: Referral | None = None,
    candidates: list[Match] | None = None,
) -> Referral:
    """Refer the case to the best provider not yet tried; escalate when none is left."""
    attempt = previous.attempt + 1 if previous is not None else 1
    slotted = service_type in SLOTTED
    matches = (
        candidates if candidates is not None else await _candidates(session, view, service_type)
    )
    for match in matches:
        if slotted and not await reserve_slot(session, match.service.id):
            continue  # taken by a concurrent referral since it was ranked
        return await open_referral(
            session,
            view=view,
            service=match.service,
            from_org=from_org,
            urgency=view.urgency,
            holds_slot=slotted,
            actor=actor,
            now=now,
            settings=settings,
            attempt=attempt,
            previous_id=previous.id if previous is not None else None,
        )
    return await escalate_to_commission(
        session,
        view=view,
        service_type=service_type,
        from_org=from_org,
        previous=previous,
        attempt=attempt,
        now=now,
    )
