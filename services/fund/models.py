"""Tables of the fund database.

Money is integer minor units (BigInteger) with its ISO 4217 currency. The ledger is
double-entry and balanced by construction: every journal entry moves one positive
amount from one account (credit) to another (debit), so it sums to zero by its shape.
Account balances are maintained by a database trigger from the entries themselves
(migration r0002), and a CHECK refuses any balance below zero except the funding
account's (the source side of allocations, negative by nature).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from nrm.clock import utcnow


class FundTable(SQLModel, registry=registry()):
    """Base of the fund tables: their own metadata, apart from other components'."""


class KnownOrganization(FundTable, table=True):
    """An organisation's sector, from the gateway's events: what a commission vote counts as."""

    __tablename__ = "fund_organizations"

    org_id: str = Field(primary_key=True, max_length=100)
    sector: str = Field(max_length=40)
    active: bool = Field(default=True, sa_type=Boolean)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class KnownCase(FundTable, table=True):
    """A case as intake announced it: only its id, owner and whether it is still open."""

    __tablename__ = "fund_cases"

    case_id: str = Field(primary_key=True, max_length=36)
    org_id: str = Field(max_length=100)
    status: str = Field(max_length=20)  # open | closed | erased
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Source(FundTable, table=True):
    __tablename__ = "fund_sources"
    __table_args__ = (
        CheckConstraint("kind IN ('state_budget', 'donor')", name="ck_fund_sources_kind"),
    )

    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=20)
    name: str = Field(max_length=200)
    currency: str = Field(max_length=3)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class BudgetLine(FundTable, table=True):
    __tablename__ = "fund_budget_lines"
    __table_args__ = (
        UniqueConstraint("source_id", "purpose", name="uq_fund_budget_lines_purpose"),
        ForeignKeyConstraint(["source_id"], ["fund_sources.id"], name="fk_fund_lines_source"),
    )

    id: str = Field(primary_key=True, max_length=36)
    source_id: str = Field(max_length=36)
    purpose: str = Field(max_length=20)
    currency: str = Field(max_length=3)
    low_balance_minor: int = Field(sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Account(FundTable, table=True):
    """One ledger account of a budget line; `balance_minor` is kept by the entry trigger."""

    __tablename__ = "fund_accounts"
    __table_args__ = (
        UniqueConstraint("line_id", "kind", name="uq_fund_accounts_line_kind"),
        # Lets entries reference (account, currency): a posting in another currency is refused.
        UniqueConstraint("id", "currency", name="uq_fund_accounts_id_currency"),
        ForeignKeyConstraint(["line_id"], ["fund_budget_lines.id"], name="fk_fund_accounts_line"),
        CheckConstraint(
            "kind IN ('funding', 'available', 'reserved', 'paid', 'returned')",
            name="ck_fund_accounts_kind",
        ),
        CheckConstraint(
            "kind = 'funding' OR balance_minor >= 0", name="ck_fund_accounts_not_negative"
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    line_id: str = Field(max_length=36)
    kind: str = Field(max_length=20)
    currency: str = Field(max_length=3)
    balance_minor: int = Field(default=0, sa_type=BigInteger)


class JournalEntry(FundTable, table=True):
    """An immutable movement of `amount_minor` from the credit to the debit account."""

    __tablename__ = "fund_journal_entries"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_fund_entries_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="ck_fund_entries_two_legs"),
        # A request is reserved once; a disbursement is settled (paid or voided) once.
        UniqueConstraint("reserves_request_id", name="uq_fund_entries_reservation"),
        UniqueConstraint("settles_disbursement_id", name="uq_fund_entries_settlement"),
        ForeignKeyConstraint(
            ["debit_account_id", "currency"],
            ["fund_accounts.id", "fund_accounts.currency"],
            name="fk_fund_entries_debit",
        ),
        ForeignKeyConstraint(
            ["credit_account_id", "currency"],
            ["fund_accounts.id", "fund_accounts.currency"],
            name="fk_fund_entries_credit",
        ),
        ForeignKeyConstraint(["line_id"], ["fund_budget_lines.id"], name="fk_fund_entries_line"),
        Index("ix_fund_entries_line", "line_id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    kind: str = Field(max_length=20)  # allocation | reservation | payout | void | return
    line_id: str = Field(max_length=36)
    debit_account_id: str = Field(max_length=36)
    credit_account_id: str = Field(max_length=36)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    request_id: str | None = Field(default=None, max_length=36)
    reserves_request_id: str | None = Field(default=None, max_length=36)
    settles_disbursement_id: str | None = Field(default=None, max_length=36)
    reference: str | None = Field(default=None, max_length=200)
    value_date: date | None = Field(default=None, sa_type=Date)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class FundRequest(FundTable, table=True):
    __tablename__ = "fund_requests"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_fund_requests_positive"),
        Index("ix_fund_requests_case_purpose", "case_id", "purpose", "created_at"),
        Index("ix_fund_requests_org", "org_id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(max_length=36)
    org_id: str = Field(max_length=100)
    submitted_by: str = Field(max_length=200)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    purpose: str = Field(max_length=20)
    payee_kind: str = Field(max_length=20)  # person | organization
    payee_org_id: str | None = Field(default=None, max_length=100)
    payout_method: str = Field(max_length=20)  # cash_office | mobile_wallet | bank_account
    # The account number only encrypted (AES-GCM); the hint is its last four characters.
    payee_account_sealed: str | None = Field(default=None, sa_type=Text)
    payee_account_hint: str | None = Field(default=None, max_length=8)
    justification: str = Field(sa_type=Text)
    status: str = Field(max_length=20)  # pending | approved | rejected | paid | failed
    needs_commission: bool = Field(default=False, sa_type=Boolean)
    line_id: str | None = Field(default=None, max_length=36)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    rejection_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Vote(FundTable, table=True):
    """A commission member's vote: one per member and request (the primary key says so)."""

    __tablename__ = "fund_votes"
    __table_args__ = (
        ForeignKeyConstraint(["request_id"], ["fund_requests.id"], name="fk_fund_votes_request"),
    )

    request_id: str = Field(primary_key=True, max_length=36)
    voter: str = Field(primary_key=True, max_length=200)
    org_id: str = Field(max_length=100)
    sector: str = Field(max_length=40)
    decision: str = Field(max_length=10)  # approve | reject
    reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Disbursement(FundTable, table=True):
    """The payment of an approved request: one per request, settled once in the ledger."""

    __tablename__ = "fund_disbursements"
    __table_args__ = (
        UniqueConstraint("request_id", name="uq_fund_disbursements_request"),
        ForeignKeyConstraint(
            ["request_id"], ["fund_requests.id"], name="fk_fund_disbursements_request"
        ),
        Index("ix_fund_disbursements_due", "status", "next_attempt_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    request_id: str = Field(max_length=36)
    line_id: str = Field(max_length=36)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    channel: str = Field(max_length=20)  # cash_office | provider
    status: str = Field(max_length=20)  # pending | in_flight | paid | failed
    attempts: int = Field(default=0, sa_type=Integer)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    lease_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    provider_reference: str | None = Field(default=None, max_length=100)
    receipt_number: str | None = Field(default=None, max_length=100)
    failure_code: str | None = Field(default=None, max_length=50)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    settled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
