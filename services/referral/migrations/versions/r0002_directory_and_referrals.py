"""Directory (organizations, locations, services), case views, referrals and their history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.referral.geography import PLACES

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("organization_type", sa.String(40), nullable=False),
        sa.Column("email", sa.String(200), nullable=True),
        sa.Column("phone", sa.String(50), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("auto_route", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    locations = op.create_table(
        "locations",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("region_code", sa.String(20), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
    )
    op.bulk_insert(
        locations,
        [
            {
                "id": p.code,
                "name": p.name,
                "kind": p.kind,
                "country": p.country,
                "region_code": p.region_code,
                "latitude": p.latitude,
                "longitude": p.longitude,
            }
            for p in PLACES
        ],
    )
    op.create_table(
        "services",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "organization_id", sa.String(100), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("service_type", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.String(2000), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("languages", sa.String(200), nullable=False),
        sa.Column("genders", sa.String(100), nullable=False),
        sa.Column("min_age", sa.Integer(), nullable=True),
        sa.Column("max_age", sa.Integer(), nullable=True),
        sa.Column("accepts_children", sa.Boolean(), nullable=False),
        sa.Column("sensitivities", sa.String(400), nullable=False),
        sa.Column("accessibility", sa.String(400), nullable=True),
        sa.Column("hours", sa.String(400), nullable=True),
        sa.Column("location_id", sa.String(20), sa.ForeignKey("locations.id"), nullable=False),
        sa.Column("region_code", sa.String(20), nullable=False),
        sa.Column("district_code", sa.String(20), nullable=True),
        sa.Column("capacity_total", sa.Integer(), nullable=False),
        sa.Column("capacity_available", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint(
            "capacity_available >= 0 AND capacity_available <= capacity_total",
            name="ck_services_capacity",
        ),
    )
    op.create_index("ix_services_match", "services", ["service_type", "status", "region_code"])
    op.create_index("ix_services_organization", "services", ["organization_id"])
    op.create_table(
        "case_views",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("org_id", sa.String(100), nullable=True),
        sa.Column("case_type", sa.String(40), nullable=True),
        sa.Column("urgency", sa.String(20), nullable=False),
        sa.Column("sensitivity", sa.String(400), nullable=False),
        sa.Column("needs", sa.String(400), nullable=False),
        sa.Column("region", sa.String(20), nullable=True),
        sa.Column("language", sa.String(10), nullable=True),
        sa.Column("gender", sa.String(20), nullable=False),
        sa.Column("age_band", sa.String(10), nullable=False),
        sa.Column("is_child", sa.Boolean(), nullable=False),
        sa.Column("consent_scopes", sa.String(1000), nullable=False),
        sa.Column("withdrawn_scopes", sa.String(1000), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("facts_at", TZ, nullable=True),
    )
    op.create_table(
        "referrals",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("from_org", sa.String(100), nullable=False),
        sa.Column("to_org", sa.String(100), nullable=True),
        sa.Column("service_id", sa.String(36), sa.ForeignKey("services.id"), nullable=True),
        sa.Column("service_type", sa.String(40), nullable=False),
        sa.Column("urgency", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("previous_id", sa.String(36), nullable=True),
        sa.Column("reason", sa.String(100), nullable=True),
        sa.Column("holds_slot", sa.Boolean(), nullable=False),
        sa.Column("due_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_referrals_due", "referrals", ["status", "due_at"])
    op.create_index("ix_referrals_to_org", "referrals", ["to_org", "status"])
    op.create_index("ix_referrals_from_org", "referrals", ["from_org", "status"])
    op.create_index("ix_referrals_case", "referrals", ["case_id", "service_type"])
    op.create_table(
        "referral_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("referral_id", sa.String(36), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_org", sa.String(100), nullable=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(100), nullable=True),
    )
    op.create_index("ix_referral_history_referral", "referral_history", ["referral_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_referral_history_referral", table_name="referral_history")
    op.drop_table("referral_history")
    for index in ("ix_referrals_case", "ix_referrals_from_org", "ix_referrals_to_org"):
        op.drop_index(index, table_name="referrals")
    op.drop_index("ix_referrals_due", table_name="referrals")
    op.drop_table("referrals")
    op.drop_table("case_views")
    op.drop_index("ix_services_organization", table_name="services")
    op.drop_index("ix_services_match", table_name="services")
    op.drop_table("services")
    op.drop_table("locations")
    op.drop_table("organizations")
