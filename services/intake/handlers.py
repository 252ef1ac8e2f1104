"""Events intake consumes: referral outcomes become grants and timeline entries."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.clock import utcnow
from nrm.events import Envelope, Event
from nrm.inbox import EventHandler
from services.fund.events import DisbursementFailed, DisbursementPaid
from services.intake.models import Grant, TimelineItem
from services.referral.events import (
    ReferralAccepted,
    ReferralCompleted,
    ReferralCreated,
    ReferralDeclined,
    ReferralRevoked,
)

# A referral's status only moves forward: an event that arrives late never undoes a later one.
REFERRAL_ORDER = {"pending": 0, "accepted": 1, "declined": 2, "completed": 2, "revoked": 2}
REFERRAL_EVENTS = (
    ReferralCreated,
    ReferralAccepted,
    ReferralDeclined,
    ReferralCompleted,
    ReferralRevoked,
)
STATUS_OF: dict[type[Event], str] = {
    ReferralCreated: "pending",
    ReferralAccepted: "accepted",
    ReferralDeclined: "declined",
    ReferralCompleted: "completed",
    ReferralRevoked: "revoked",
}


async def _timeline(
    session: AsyncSession, *, ref_id: str, case_id: str, kind: str, status: str, detail: str
) -> bool:
    """Record the status; False if a later status is already known."""
    item = await session.get(TimelineItem, ref_id)
    if item is not None and REFERRAL_ORDER.get(item.status, 0) > REFERRAL_ORDER.get(status, 0):
        return False
    item = item or TimelineItem(ref_id=ref_id, case_id=case_id, kind=kind, status=status)
    item.status, item.detail, item.updated_at = status, detail, utcnow()
    session.add(item)
    return True


async def referral_changed(session: AsyncSession, event: Event, _: Envelope) -> None:
    assert isinstance(event, REFERRAL_EVENTS)
    status = STATUS_OF[type(event)]
    current = await _timeline(
        session,
        ref_id=str(event.referral_id),
        case_id=str(event.case_id),
        kind="referral",
        status=status,
        detail=event.service_type,
    )
    if not current or status == "pending":
        return
    grant = await session.get(Grant, str(event.referral_id))
    grant = grant or Grant(
        referral_id=str(event.referral_id),
        case_id=str(event.case_id),
        org_id=event.to_org,
        service_type=event.service_type,
    )
    # Only an accepted referral opens the case to the receiving organisation.
    grant.active, grant.changed_at = status == "accepted", utcnow()
    session.add(grant)


async def payment_changed(session: AsyncSession, event: Event, _: Envelope) -> None:
    assert isinstance(event, DisbursementPaid | DisbursementFailed)
    await _timeline(
        session,
        ref_id=str(event.disbursement_id),
        case_id=str(event.case_id),
        kind="payment",
        status="paid" if isinstance(event, DisbursementPaid) else "failed",
        detail=f"{event.amount_minor} {event.currency}",
    )


HANDLERS: dict[type[Event], EventHandler] = {
    ReferralCreated: referral_changed,
    ReferralAccepted: referral_changed,
    ReferralDeclined: referral_changed,
    ReferralCompleted: referral_changed,
    ReferralRevoked: referral_changed,
    DisbursementPaid: payment_changed,
    DisbursementFailed: payment_changed,
}
