"""Events the fund publishes (thin: ids, amounts in minor units, codes)."""

from uuid import UUID

from nrm.events import Event
from nrm.vocabulary import Currency, FundPurpose


class _RequestEvent(Event):
    subject_field = "request_id"

    request_id: UUID
    case_id: UUID
    org_id: str
    amount_minor: int
    currency: Currency
    purpose: FundPurpose


class RequestSubmitted(_RequestEvent):
    type = "nrm.fund.request.submitted.v1"

    needs_commission: bool = False


class RequestApproved(_RequestEvent):
    type = "nrm.fund.request.approved.v1"


class RequestRejected(_RequestEvent):
    type = "nrm.fund.request.rejected.v1"


class _DisbursementEvent(Event):
    subject_field = "disbursement_id"

    request_id: UUID
    disbursement_id: UUID
    case_id: UUID
    org_id: str
    amount_minor: int
    currency: Currency


class DisbursementPaid(_DisbursementEvent):
    type = "nrm.fund.disbursement.paid.v1"


class DisbursementFailed(_DisbursementEvent):
    type = "nrm.fund.disbursement.failed.v1"

    reason: str


class SourceLowBalance(Event):
    type = "nrm.fund.source.low_balance.v1"
    subject_field = "source_id"

    source_id: UUID
    line_id: UUID
    available_minor: int
    currency: Currency
