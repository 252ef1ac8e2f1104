"""Intake's domain logic."""

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.outbox import record_event
from services.intake.events import DiagnosticPinged


def send_ping(session: AsyncSession, *, org_id: str) -> uuid.UUID:
    ping_id = uuid.uuid4()
    record_event(session, DiagnosticPinged(ping_id=ping_id, org_id=org_id))
    return ping_id
