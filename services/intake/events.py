"""Events intake publishes (thin: ids and codes only)."""

from uuid import UUID

from nrm.events import Event


class DiagnosticPinged(Event):
    """An operator's end-to-end check of the event pipes: outbox, bus, inbox."""

    type = "nrm.intake.diagnostic.pinged.v1"
    subject_field = "ping_id"

    ping_id: UUID
    org_id: str
