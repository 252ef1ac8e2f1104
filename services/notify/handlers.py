"""Events notify consumes, routed by a plain dict."""

from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.clock import utcnow
from nrm.events import Envelope, Event
from nrm.inbox import EventHandler
from services.intake.events import DiagnosticPinged
from services.notify.models import PingReceipt


async def record_ping(session: AsyncSession, event: DiagnosticPinged, envelope: Envelope) -> None:
    session.add(
        PingReceipt(
            ping_id=str(event.ping_id),
            source_org=event.org_id,
            sent_at=envelope.time,
            received_at=utcnow(),
        )
    )


HANDLERS: dict[type[Event], EventHandler] = {DiagnosticPinged: record_ping}
