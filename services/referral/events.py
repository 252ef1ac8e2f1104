"""Events referral publishes (thin)."""

from datetime import datetime
from uuid import UUID

from nrm.events import Event
from nrm.vocabulary import ServiceType, Urgency


class ReferralCreated(Event):
    type = "nrm.referral.referral.created.v1"
    subject_field = "referral_id"

    referral_id: UUID
    case_id: UUID
    from_org: str
    to_org: str
    service_type: ServiceType
    urgency: Urgency
    due_at: datetime


class _ReferralChanged(Event):
    subject_field = "referral_id"

    referral_id: UUID
    case_id: UUID
    from_org: str
    to_org: str
    service_type: ServiceType
    reason: str | None = None


class ReferralAccepted(_ReferralChanged):
    type = "nrm.referral.referral.accepted.v1"


class ReferralDeclined(_ReferralChanged):
    type = "nrm.referral.referral.declined.v1"


class ReferralCompleted(_ReferralChanged):
    type = "nrm.referral.referral.completed.v1"


class ReferralRevoked(_ReferralChanged):
    type = "nrm.referral.referral.revoked.v1"


class ReferralEscalated(Event):
    """No provider answered in time, or several declined: someone must step in."""

    type = "nrm.referral.referral.escalated.v1"
    subject_field = "referral_id"

    referral_id: UUID
    case_id: UUID
    from_org: str
    service_type: ServiceType
    level: int
    next_org: str | None = None  # None: nobody left to route to; the commission is told
