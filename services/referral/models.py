"""Tables of the referral database.

Directory tables are named after Open Referral HSDS 3 objects (organization, service,
location). Lists of codes (languages, genders, sensitivity flags) are stored as
",a,b," strings so one portable `LIKE '%,a,%'` ranks them in SQL on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Index, Integer
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from nrm.clock import utcnow


class ReferralTable(SQLModel, registry=registry()):
    """Base of the referral tables: their own metadata, apart from other components'."""


def pack(codes: Iterable[str]) -> str:
    unique = sorted(set(codes))
    return "," + ",".join(unique) + "," if unique else ""


def unpack(packed: str) -> list[str]:
    return [code for code in packed.split(",") if code]


class Organization(ReferralTable, table=True):
    __tablename__ = "organizations"

    id: str = Field(primary_key=True, max_length=100)
    name: str = Field(max_length=200)
    organization_type: str = Field(max_length=40)
    email: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=50)
    active: bool = True
    # Cases this organisation registers are routed automatically unless it turns this off.
    auto_route: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Location(ReferralTable, table=True):
    __tablename__ = "locations"

    id: str = Field(primary_key=True, max_length=20)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=20)
    country: str = Field(max_length=2)
    region_code: str = Field(max_length=20)
    latitude: float | None = None
    longitude: float | None = None


class Service(ReferralTable, table=True):
    __tablename__ = "services"
    __table_args__ = (
        CheckConstraint(
            "capacity_available >= 0 AND capacity_available <= capacity_total",
            name="ck_services_capacity",
        ),
        Index("ix_services_match", "service_type", "status", "region_code"),
        Index("ix_services_organization", "organization_id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    organization_id: str = Field(foreign_key="organizations.id", max_length=100)
    service_type: str = Field(max_length=40)
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    status: str = Field(default="active", max_length=20)
    languages: str = Field(default="", max_length=200)
    genders: str = Field(default="", max_length=100)  # empty: everyone
    min_age: int | None = None
    max_age: int | None = None
    accepts_children: bool = False
    sensitivities: str = Field(default="", max_length=400)
    accessibility: str | None = Field(default=None, max_length=400)
    hours: str | None = Field(default=None, max_length=400)
    location_id: str = Field(foreign_key="locations.id", max_length=20)
    # Copied from the location so matching filters and ranks on indexed columns.
    region_code: str = Field(max_length=20)
    district_code: str | None = Field(default=None, max_length=20)
    capacity_total: int = Field(default=0, sa_type=Integer)
    capacity_available: int = Field(default=0, sa_type=Integer)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class CaseView(ReferralTable, table=True):
    """What referral knows of a case: codes from intake's events, never who the person is."""

    __tablename__ = "case_views"

    case_id: str = Field(primary_key=True, max_length=36)
    org_id: str | None = Field(default=None, max_length=100)
    case_type: str | None = Field(default=None, max_length=40)
    urgency: str = Field(default="normal", max_length=20)
    sensitivity: str = Field(default="", max_length=400)
    needs: str = Field(default="", max_length=400)
    region: str | None = Field(default=None, max_length=20)
    language: str | None = Field(default=None, max_length=10)
    gender: str = Field(default="unknown", max_length=20)
    age_band: str = Field(default="unknown", max_length=10)
    is_child: bool = False
    consent_scopes: str = Field(default="", max_length=1000)
    # Withdrawn before registration arrived (out of order): never granted afterwards.
    withdrawn_scopes: str = Field(default="", max_length=1000)
    status: str = Field(default="open", max_length=20)  # open, closed, erased
    registered: bool = False
    facts_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Referral(ReferralTable, table=True):
    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_due", "status", "due_at"),
        Index("ix_referrals_to_org", "to_org", "status"),
        Index("ix_referrals_from_org", "from_org", "status"),
        Index("ix_referrals_case", "case_id", "service_type"),
    )

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(max_length=36)
    from_org: str = Field(max_length=100)
    to_org: str | None = Field(default=None, max_length=100)
    service_id: str | None = Field(default=None, foreign_key="services.id", max_length=36)
    service_type: str = Field(max_length=40)
    urgency: str = Field(max_length=20)
    status: str = Field(max_length=20)
    attempt: int = Field(default=1, sa_type=Integer)
    previous_id: str | None = Field(default=None, max_length=36)
    reason: str | None = Field(default=None, max_length=100)
    # A shelter bed held for this referral, given back when it ends.
    holds_slot: bool = False
    due_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ReferralHistory(ReferralTable, table=True):
    __tablename__ = "referral_history"
    __table_args__ = (Index("ix_referral_history_referral", "referral_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    referral_id: str = Field(max_length=36)
    at: datetime = Field(sa_type=DateTime(timezone=True))
    actor: str = Field(max_length=200)
    actor_org: str | None = Field(default=None, max_length=100)
    action: str = Field(max_length=20)
    status: str = Field(max_length=20)
    reason: str | None = Field(default=None, max_length=100)
