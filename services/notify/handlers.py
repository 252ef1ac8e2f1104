"""Events notify consumes, routed by a plain dict."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.events import OrganizationChanged, UserChanged
from nrm.clock import as_utc, utcnow
from nrm.events import Envelope, Event
from nrm.inbox import EventHandler
from services.intake.events import DiagnosticPinged
from services.notify.fanout import backfill, fan_out
from services.notify.models import OrganizationState, PingReceipt, Recipient
from services.notify.routing import ROUTES


async def record_ping(session: AsyncSession, event: DiagnosticPinged, envelope: Envelope) -> None:
    session.add(
        PingReceipt(
            ping_id=str(event.ping_id),
            source_org=event.org_id,
            sent_at=envelope.time,
            received_at=utcnow(),
        )
    )


async def keep_recipient(session: AsyncSession, event: UserChanged, envelope: Envelope) -> None:
    recipient = await session.get(Recipient, event.user_id)
    if recipient is None:
        recipient = Recipient(user_id=event.user_id, org_id=event.org_id)
    elif as_utc(recipient.updated_at) > envelope.time:
        return  # an older change delivered late must not undo a newer one
    recipient.org_id = event.org_id
    recipient.roles = " ".join(sorted(event.roles))
    recipient.language = event.language
    recipient.active = event.active
    recipient.updated_at = envelope.time
    session.add(recipient)
    await backfill(session, recipient)


async def keep_organization(session: AsyncSession, event: OrganizationChanged, _: Envelope) -> None:
    state = await session.get(OrganizationState, event.org_id)
    if state is None:
        state = OrganizationState(org_id=event.org_id)
    state.active = event.active
    session.add(state)


HANDLERS: dict[type[Event], EventHandler] = {
    DiagnosticPinged: record_ping,
    UserChanged: keep_recipient,
    OrganizationChanged: keep_organization,
    **dict.fromkeys(ROUTES, fan_out),
}
