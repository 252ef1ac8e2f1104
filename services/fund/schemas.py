"""Bodies of the fund's API. Money is `amount_minor` (a strict integer: `1000.0` is
refused) with an ISO 4217 `currency`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nrm.vocabulary import FundPurpose

AmountMinor = Annotated[int, Field(strict=True, gt=0, le=10**13)]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
SourceKind = Literal["state_budget", "donor"]
PayoutMethod = Literal["cash_office", "mobile_wallet", "bank_account"]
RequestStatus = Literal["pending", "approved", "rejected", "paid", "failed"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineCreate(_Body):
    purpose: FundPurpose
    low_balance_minor: Annotated[int, Field(strict=True, ge=0, le=10**13)] | None = None


class SourceCreate(_Body):
    kind: SourceKind
    name: str = Field(min_length=1, max_length=200)
    currency: CurrencyCode = "TJS"
    # Omitted: a line for every purpose. A donor's earmark names only its purposes.
    lines: list[LineCreate] | None = Field(default=None, min_length=1, max_length=6)


class LinePublic(BaseModel):
    id: UUID
    purpose: FundPurpose
    currency: str
    low_balance_minor: int
    allocated_minor: int
    available_minor: int
    reserved_minor: int
    paid_minor: int
    returned_minor: int


class SourcePublic(BaseModel):
    id: UUID
    kind: SourceKind
    name: str
    currency: str
    created_at: datetime
    lines: list[LinePublic]


class AllocationCreate(_Body):
    purpose: FundPurpose
    amount_minor: AmountMinor
    currency: CurrencyCode = "TJS"
    reference: str = Field(min_length=1, max_length=200)
    value_date: date


class EntryPublic(BaseModel):
    id: str
    kind: str
    line_id: UUID
    debit: str
    credit: str
    amount_minor: int
    currency: str
    request_id: UUID | None
    reference: str | None
    value_date: date | None
    created_at: datetime


class Payee(_Body):
    kind: Literal["person", "organization"]
    method: PayoutMethod
    org_id: str | None = Field(default=None, min_length=1, max_length=100)
    # A wallet or bank account number: stored encrypted, answered only as its last 4.
    account: str | None = Field(
        default=None, min_length=4, max_length=64, pattern=r"^[0-9A-Za-z+ -]+$"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "organization" and self.org_id is None:
            raise ValueError("an organisation payee needs org_id")
        if (self.method == "cash_office") != (self.account is None):
            raise ValueError("an account is needed for wallet and bank payouts, and only then")
        return self


class PayeePublic(BaseModel):
    kind: str
    method: str
    org_id: str | None
    account_hint: str | None


class RequestCreate(_Body):
    case_id: UUID
    amount_minor: AmountMinor
    currency: CurrencyCode = "TJS"
    purpose: FundPurpose
    payee: Payee
    justification: str = Field(min_length=1, max_length=2000)


class VotePublic(BaseModel):
    voter: str
    org_id: str
    sector: str
    decision: str
    reason: str | None
    created_at: datetime


class DisbursementPublic(BaseModel):
    id: UUID
    channel: str
    status: str
    attempts: int
    receipt_number: str | None
    failure_code: str | None
    settled_at: datetime | None


class RequestPublic(BaseModel):
    id: UUID
    case_id: UUID
    org_id: str
    amount_minor: int
    currency: str
    purpose: FundPurpose
    payee: PayeePublic
    justification: str
    status: RequestStatus
    needs_commission: bool
    line_id: UUID | None
    rejection_reason: str | None
    created_at: datetime
    decided_at: datetime | None
    votes: list[VotePublic]
    disbursement: DisbursementPublic | None


class Approval(_Body):
    # The officer's choice of line; omitted, the policy's order decides.
    line_id: UUID | None = None


class Rejection(_Body):
    reason: str = Field(min_length=1, max_length=500)


class CashHandover(_Body):
    receipt_number: str = Field(min_length=1, max_length=100)


class DisbursedTotal(BaseModel):
    purpose: str
    month: str
    org_id: str
    currency: str
    amount_minor: int


class BalanceReport(BaseModel):
    sources: list[SourcePublic]
    pending_reservations: int
    reserved_minor_by_currency: dict[str, int]
    disbursed: list[DisbursedTotal]
