"""Events referral consumes: intake's case facts, kept as a local view, and routing.

Each handler runs once per event id (the inbox), and tolerates events arriving in any
order: a withdrawal or closure seen before the registration is remembered on a stub
view, and facts older than those already applied are not written over them.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.clock import as_utc
from nrm.events import Envelope, Event
from nrm.inbox import EventHandler
from services.intake.events import (
    CaseClosed,
    CaseErased,
    CaseRegistered,
    CaseUpdated,
    ConsentWithdrawn,
)
from services.referral.config import now_of, referral_settings
from services.referral.lifecycle import OPEN, revoke_for_case
from services.referral.models import CaseView, Organization, Referral, pack, unpack
from services.referral.routing import route_need
from services.referral.views import ALL_REFERRALS, has_referral_consent


async def _view(session: AsyncSession, case_id: str, org_id: str) -> CaseView:
    view = await session.get(CaseView, case_id)
    if view is None:
        view = CaseView(case_id=case_id, org_id=org_id)
        session.add(view)
    return view


def _newer(view: CaseView, moment: datetime) -> bool:
    return view.facts_at is None or as_utc(view.facts_at) <= moment


async def on_case_registered(
    session: AsyncSession, event: CaseRegistered, envelope: Envelope
) -> None:
    view = await _view(session, str(event.case_id), event.org_id)
    if view.registered:
        return  # the same registration again, under another event id
    view.registered = True
    if view.status == "erased":
        return  # erased before its registration arrived: keep nothing
    view.org_id = event.org_id
    view.case_type = event.case_type
    view.region = event.region
    view.language = event.language
    view.gender = event.gender
    view.age_band = event.age_band
    view.is_child = event.is_child
    view.consent_scopes = pack(event.consent_scopes)
    if _newer(view, envelope.time):
        view.urgency = event.urgency
        view.sensitivity = pack(event.sensitivity)
        view.needs = pack(event.needs)
        view.facts_at = envelope.time
    await session.flush()
    if view.status != "open":
        return
    if not await _auto_routes(session, view):
        return
    await route_needs(session, view, [str(need) for need in event.needs], now=now_of(session.info))


async def route_needs(
    session: AsyncSession, view: CaseView, needs: list[str], *, now: datetime
) -> None:
    """One referral per consented need that has no open referral yet."""
    for need in dict.fromkeys(needs):
        if not has_referral_consent(view, need):
            continue
        open_referral = await session.exec(
            select(Referral.id).where(
                Referral.case_id == view.case_id,
                Referral.service_type == need,
                col(Referral.status).in_(OPEN),
            )
        )
        if open_referral.first() is not None:
            continue
        await route_need(
            session,
            view,
            need,
            from_org=view.org_id or "",
            now=now,
            settings=referral_settings(),
        )


async def on_case_updated(session: AsyncSession, event: CaseUpdated, envelope: Envelope) -> None:
    view = await _view(session, str(event.case_id), event.org_id)
    if not _newer(view, envelope.time):
        return  # an older update arriving late
    view.urgency = event.urgency
    view.sensitivity = pack(event.sensitivity)
    view.needs = pack(event.needs)
    view.facts_at = envelope.time
    await session.flush()
    if view.registered and view.status == "open" and await _auto_routes(session, view):
        # A need added later is referred like the first ones; existing ones are left as they are.
        await route_needs(session, view, [str(n) for n in event.needs], now=now_of(session.info))


async def _auto_routes(session: AsyncSession, view: CaseView) -> bool:
    organization = await session.get(Organization, view.org_id or "")
    return organization is None or organization.auto_route


async def on_consent_withdrawn(
    session: AsyncSession, event: ConsentWithdrawn, envelope: Envelope
) -> None:
    view = await _view(session, str(event.case_id), event.org_id)
    withdrawn = set(event.scopes)
    view.withdrawn_scopes = pack(set(unpack(view.withdrawn_scopes)) | withdrawn)
    await session.flush()
    if withdrawn & ALL_REFERRALS:
        types: set[str] | None = None
    else:
        types = {s.removeprefix("referral:") for s in withdrawn if s.startswith("referral:")}
        if not types:
            return
    await revoke_for_case(
        session,
        view.case_id,
        reason="consent_withdrawn",
        now=now_of(session.info),
        service_types=types,
    )


async def on_case_closed(session: AsyncSession, event: CaseClosed, envelope: Envelope) -> None:
    view = await _view(session, str(event.case_id), event.org_id)
    if view.status == "open":
        view.status = "closed"
    await session.flush()
    await revoke_for_case(session, view.case_id, reason="case_closed", now=now_of(session.info))


async def on_case_erased(session: AsyncSession, event: CaseErased, envelope: Envelope) -> None:
    view = await _view(session, str(event.case_id), event.org_id)
    view.status = "erased"
    # Codes only, yet nothing about an erased person is kept that is not needed.
    view.region = view.language = None
    view.gender = view.age_band = "unknown"
    view.sensitivity = ""
    await session.flush()
    await revoke_for_case(session, view.case_id, reason="case_erased", now=now_of(session.info))


HANDLERS: dict[type[Event], EventHandler] = {
    CaseRegistered: on_case_registered,
    CaseUpdated: on_case_updated,
    ConsentWithdrawn: on_consent_withdrawn,
    CaseClosed: on_case_closed,
    CaseErased: on_case_erased,
}
