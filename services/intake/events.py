"""Events intake publishes (thin: ids, codes, urgency, region, age band — never who)."""

from uuid import UUID

from nrm.events import Event
from nrm.vocabulary import AgeBand, CaseType, ConsentScope, Gender, ServiceType, Urgency


class DiagnosticPinged(Event):
    """An operator's end-to-end check of the event pipes: outbox, bus, inbox."""

    type = "nrm.intake.diagnostic.pinged.v1"
    subject_field = "ping_id"

    ping_id: UUID
    org_id: str


class CaseRegistered(Event):
    type = "nrm.intake.case.registered.v1"
    subject_field = "case_id"

    case_id: UUID
    org_id: str
    case_type: CaseType
    urgency: Urgency
    sensitivity: list[str]
    needs: list[ServiceType]
    region: str | None = None
    language: str | None = None
    gender: Gender = "unknown"
    age_band: AgeBand = "unknown"
    is_child: bool = False
    consent_scopes: list[ConsentScope]


class CaseUpdated(Event):
    type = "nrm.intake.case.updated.v1"
    subject_field = "case_id"

    case_id: UUID
    org_id: str
    changed: list[str]  # field names only
    urgency: Urgency
    sensitivity: list[str]
    needs: list[ServiceType]


class ConsentWithdrawn(Event):
    type = "nrm.intake.consent.withdrawn.v1"
    subject_field = "case_id"

    case_id: UUID
    org_id: str
    consent_id: UUID
    scopes: list[ConsentScope]


class CaseClosed(Event):
    type = "nrm.intake.case.closed.v1"
    subject_field = "case_id"

    case_id: UUID
    org_id: str
    reason: str


class CaseErased(Event):
    type = "nrm.intake.case.erased.v1"
    subject_field = "case_id"

    case_id: UUID
    org_id: str
    reason: str
