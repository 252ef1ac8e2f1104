"""The fund: organisations and cases it knows, sources, budget lines, the double-entry
ledger, requests, commission votes and disbursements.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

The ledger's guarantees live in the database: CHECKs (positive amounts, two distinct
legs, no negative balance), currency-carrying foreign keys, unique reservation and
settlement per request and disbursement, and triggers that keep account balances from
the entries and refuse any change to an entry once written (SQLite and PostgreSQL).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POSTGRES_TRIGGERS = (
    """
    CREATE FUNCTION fund_apply_entry() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE fund_accounts SET balance_minor = balance_minor + NEW.amount_minor
            WHERE id = NEW.debit_account_id;
        UPDATE fund_accounts SET balance_minor = balance_minor - NEW.amount_minor
            WHERE id = NEW.credit_account_id;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER fund_entries_apply AFTER INSERT ON fund_journal_entries
        FOR EACH ROW EXECUTE FUNCTION fund_apply_entry()
    """,
    """
    CREATE FUNCTION fund_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'fund journal entries are immutable'
            USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    """
    CREATE TRIGGER fund_entries_immutable BEFORE UPDATE OR DELETE ON fund_journal_entries
        FOR EACH ROW EXECUTE FUNCTION fund_refuse_change()
    """,
)
_POSTGRES_DROP = (
    "DROP TRIGGER fund_entries_immutable ON fund_journal_entries",
    "DROP TRIGGER fund_entries_apply ON fund_journal_entries",
    "DROP FUNCTION fund_refuse_change()",
    "DROP FUNCTION fund_apply_entry()",
)
_SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER fund_entries_apply AFTER INSERT ON fund_journal_entries
    BEGIN
        UPDATE fund_accounts SET balance_minor = balance_minor + NEW.amount_minor
            WHERE id = NEW.debit_account_id;
        UPDATE fund_accounts SET balance_minor = balance_minor - NEW.amount_minor
            WHERE id = NEW.credit_account_id;
    END
    """,
    """
    CREATE TRIGGER fund_entries_no_update BEFORE UPDATE ON fund_journal_entries
    BEGIN SELECT RAISE(ABORT, 'fund journal entries are immutable'); END
    """,
    """
    CREATE TRIGGER fund_entries_no_delete BEFORE DELETE ON fund_journal_entries
    BEGIN SELECT RAISE(ABORT, 'fund journal entries are immutable'); END
    """,
)
_SQLITE_DROP = (
    "DROP TRIGGER fund_entries_no_delete",
    "DROP TRIGGER fund_entries_no_update",
    "DROP TRIGGER fund_entries_apply",
)


def upgrade() -> None:
    op.create_table(
        "fund_cases",
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_table(
        "fund_organizations",
        sa.Column("org_id", sa.String(length=100), nullable=False),
        sa.Column("sector", sa.String(length=40), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id"),
    )
    op.create_table(
        "fund_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=100), nullable=False),
        sa.Column("submitted_by", sa.String(length=200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("payee_kind", sa.String(length=20), nullable=False),
        sa.Column("payee_org_id", sa.String(length=100), nullable=True),
        sa.Column("payout_method", sa.String(length=20), nullable=False),
        sa.Column("payee_account_sealed", sa.Text(), nullable=True),
        sa.Column("payee_account_hint", sa.String(length=8), nullable=True),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("needs_commission", sa.Boolean(), nullable=False),
        sa.Column("line_id", sa.String(length=36), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rejection_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_fund_requests_positive"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_fund_requests_case_purpose",
        "fund_requests",
        ["case_id", "purpose", "created_at"],
        unique=False,
    )
    op.create_index("ix_fund_requests_org", "fund_requests", ["org_id"], unique=False)
    op.create_table(
        "fund_sources",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('state_budget', 'donor')", name="ck_fund_sources_kind"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "fund_budget_lines",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("low_balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["fund_sources.id"], name="fk_fund_lines_source"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "purpose", name="uq_fund_budget_lines_purpose"),
    )
    op.create_table(
        "fund_disbursements",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("line_id", sa.String(length=36), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_reference", sa.String(length=100), nullable=True),
        sa.Column("receipt_number", sa.String(length=100), nullable=True),
        sa.Column("failure_code", sa.String(length=50), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["fund_requests.id"], name="fk_fund_disbursements_request"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", name="uq_fund_disbursements_request"),
    )
    op.create_index(
        "ix_fund_disbursements_due",
        "fund_disbursements",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "fund_votes",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("voter", sa.String(length=200), nullable=False),
        sa.Column("org_id", sa.String(length=100), nullable=False),
        sa.Column("sector", sa.String(length=40), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["fund_requests.id"], name="fk_fund_votes_request"),
        sa.PrimaryKeyConstraint("request_id", "voter"),
    )
    op.create_table(
        "fund_accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("line_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "kind = 'funding' OR balance_minor >= 0", name="ck_fund_accounts_not_negative"
        ),
        sa.CheckConstraint(
            "kind IN ('funding', 'available', 'reserved', 'paid', 'returned')",
            name="ck_fund_accounts_kind",
        ),
        sa.ForeignKeyConstraint(
            ["line_id"], ["fund_budget_lines.id"], name="fk_fund_accounts_line"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("id", "currency", name="uq_fund_accounts_id_currency"),
        sa.UniqueConstraint("line_id", "kind", name="uq_fund_accounts_line_kind"),
    )
    op.create_table(
        "fund_journal_entries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("line_id", sa.String(length=36), nullable=False),
        sa.Column("debit_account_id", sa.String(length=36), nullable=False),
        sa.Column("credit_account_id", sa.String(length=36), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("reserves_request_id", sa.String(length=36), nullable=True),
        sa.Column("settles_disbursement_id", sa.String(length=36), nullable=True),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("value_date", sa.Date(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_fund_entries_positive"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name="ck_fund_entries_two_legs"
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id", "currency"],
            ["fund_accounts.id", "fund_accounts.currency"],
            name="fk_fund_entries_credit",
        ),
        sa.ForeignKeyConstraint(
            ["debit_account_id", "currency"],
            ["fund_accounts.id", "fund_accounts.currency"],
            name="fk_fund_entries_debit",
        ),
        sa.ForeignKeyConstraint(["line_id"], ["fund_budget_lines.id"], name="fk_fund_entries_line"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reserves_request_id", name="uq_fund_entries_reservation"),
        sa.UniqueConstraint("settles_disbursement_id", name="uq_fund_entries_settlement"),
    )
    op.create_index("ix_fund_entries_line", "fund_journal_entries", ["line_id"], unique=False)

    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES_DROP if postgres else _SQLITE_DROP:
        op.execute(statement)
    op.drop_index("ix_fund_entries_line", table_name="fund_journal_entries")
    op.drop_table("fund_journal_entries")
    op.drop_table("fund_accounts")
    op.drop_table("fund_votes")
    op.drop_index("ix_fund_disbursements_due", table_name="fund_disbursements")
    op.drop_table("fund_disbursements")
    op.drop_table("fund_budget_lines")
    op.drop_table("fund_sources")
    op.drop_index("ix_fund_requests_org", table_name="fund_requests")
    op.drop_index("ix_fund_requests_case_purpose", table_name="fund_requests")
    op.drop_table("fund_requests")
    op.drop_table("fund_organizations")
    op.drop_table("fund_cases")
