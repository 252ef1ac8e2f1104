"""Events the fund consumes: which cases exist and are open, and organisations' sectors."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.events import OrganizationChanged
from nrm.clock import utcnow
from nrm.events import Envelope, Event
from nrm.inbox import EventHandler
from services.fund import erasure
from services.fund.models import KnownCase, KnownOrganization
from services.intake.events import CaseClosed, CaseErased, CaseRegistered


async def _set_case(session: AsyncSession, case_id: str, org_id: str, status: str) -> None:
    case = await session.get(KnownCase, case_id)
    if case is None:
        case = KnownCase(case_id=case_id, org_id=org_id, status=status)
    elif case.status == "erased" or (case.status == "closed" and status == "open"):
        return  # events may arrive out of order: an ending is never undone by a late start
    else:
        case.status = status
        case.updated_at = utcnow()
    session.add(case)


async def case_registered(session: AsyncSession, event: CaseRegistered, _: Envelope) -> None:
    await _set_case(session, str(event.case_id), event.org_id, "open")


async def case_closed(session: AsyncSession, event: CaseClosed, _: Envelope) -> None:
    await _set_case(session, str(event.case_id), event.org_id, "closed")


async def case_erased(session: AsyncSession, event: CaseErased, _: Envelope) -> None:
    await _set_case(session, str(event.case_id), event.org_id, "erased")
    await erasure.stop_paying(session, str(event.case_id), now=utcnow())


async def organization_changed(
    session: AsyncSession, event: OrganizationChanged, _: Envelope
) -> None:
    await remember_organization(session, event.org_id, event.sector, active=event.active)


async def remember_organization(
    session: AsyncSession, org_id: str, sector: str, *, active: bool = True
) -> None:
    organization = await session.get(KnownOrganization, org_id)
    if organization is None:
        organization = KnownOrganization(org_id=org_id, sector=sector, active=active)
    else:
        organization.sector, organization.active = sector, active
        organization.updated_at = utcnow()
    session.add(organization)


HANDLERS: dict[type[Event], EventHandler] = {
    CaseRegistered: case_registered,
    CaseClosed: case_closed,
    CaseErased: case_erased,
    OrganizationChanged: organization_changed,
}
