"""One example of every event notify turns into messages, with every field filled."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from nrm.events import Event
from services.fund.events import (
    DisbursementFailed,
    DisbursementPaid,
    RequestApproved,
    RequestRejected,
    RequestSubmitted,
    SourceLowBalance,
)
from services.intake.events import (
    CaseClosed,
    CaseErased,
    CaseRegistered,
    CaseUpdated,
    ConsentWithdrawn,
)
from services.referral.events import (
    ReferralAccepted,
    ReferralCompleted,
    ReferralCreated,
    ReferralDeclined,
    ReferralEscalated,
    ReferralRevoked,
)

CASE = uuid.uuid4()
REFERRAL = uuid.uuid4()
REQUEST = uuid.uuid4()
# Values a template must never show: where and who the person is.
REVEALING = ("Sughd", "Isfara", "female", "12-17", "trafficking_sexual")


def _changed(cls: type[Event]) -> Event:
    return cls.model_validate(
        {
            "referral_id": REFERRAL,
            "case_id": CASE,
            "from_org": "org-police",
            "to_org": "org-shelter",
            "service_type": "shelter",
            "reason": "no_capacity",
        }
    )


def _request(cls: type[Event], **extra: object) -> Event:
    fields = {
        "request_id": REQUEST,
        "case_id": CASE,
        "org_id": "org-shelter",
        "amount_minor": 150_000,
        "currency": "TJS",
        "purpose": "shelter",
    }
    return cls.model_validate(fields | extra)


def _disbursement(cls: type[Event], **extra: object) -> Event:
    fields = {
        "request_id": REQUEST,
        "disbursement_id": uuid.uuid4(),
        "case_id": CASE,
        "org_id": "org-shelter",
        "amount_minor": 150_000,
        "currency": "TJS",
    }
    return cls.model_validate(fields | extra)


SAMPLES: list[Event] = [
    CaseRegistered(
        case_id=CASE,
        org_id="org-police",
        case_type="presumed_trafficking_victim",
        urgency="critical",
        sensitivity=["trafficking_sexual"],
        needs=["shelter", "medical"],
        region="Sughd",
        language="tg",
        gender="female",
        age_band="12-17",
        is_child=True,
        consent_scopes=["referral:shelter"],
    ),
    CaseUpdated(
        case_id=CASE,
        org_id="org-police",
        changed=["needs"],
        urgency="high",
        sensitivity=["trafficking_sexual"],
        needs=["shelter"],
    ),
    ConsentWithdrawn(
        case_id=CASE, org_id="org-police", consent_id=uuid.uuid4(), scopes=["referral:shelter"]
    ),
    CaseClosed(case_id=CASE, org_id="org-police", reason="services_completed"),
    CaseErased(case_id=CASE, org_id="org-police", reason="person_request"),
    ReferralCreated(
        referral_id=REFERRAL,
        case_id=CASE,
        from_org="org-police",
        to_org="org-shelter",
        service_type="shelter",
        urgency="critical",
        due_at=datetime(2026, 11, 29, 8, 0, tzinfo=UTC),
    ),
    _changed(ReferralAccepted),
    _changed(ReferralDeclined),
    _changed(ReferralCompleted),
    _changed(ReferralRevoked),
    ReferralEscalated(
        referral_id=REFERRAL,
        case_id=CASE,
        from_org="org-police",
        service_type="shelter",
        level=2,
        next_org=None,
    ),
    _request(RequestSubmitted, needs_commission=True),
    _request(RequestApproved),
    _request(RequestRejected),
    _disbursement(DisbursementPaid),
    _disbursement(DisbursementFailed, reason="provider_error"),
    SourceLowBalance(
        source_id=uuid.uuid4(), line_id=uuid.uuid4(), available_minor=99_00, currency="TJS"
    ),
]
