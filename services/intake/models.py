"""Tables of the intake database. Personal data lives only in `sealed`, encrypted."""

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, LargeBinary, String
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from nrm.clock import utcnow


class IntakeTable(SQLModel, registry=registry()):
    """Base of the intake tables: their own metadata, apart from other components'."""


class Case(IntakeTable, table=True):
    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_org_created", "org_id", "created_at", "id"),
        Index("ix_cases_created", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    org_id: str = Field(max_length=64)
    created_by: str = Field(max_length=100)
    case_type: str = Field(sa_type=String(40))
    channel: str = Field(sa_type=String(20))
    status: str = Field(default="open", sa_type=String(10), index=True)
    urgency: str = Field(sa_type=String(10), index=True)
    urgency_rule: str = Field(sa_type=String(40))
    sensitivity: list[str] = Field(sa_type=JSON)
    needs: list[str] = Field(sa_type=JSON)
    # Coarse facts in clear: routing, triage and statistics need them; none names anyone.
    region: str | None = Field(default=None, sa_type=String(12))
    language: str | None = Field(default=None, sa_type=String(2))
    gender: str = Field(sa_type=String(12))
    age_band: str = Field(sa_type=String(8))
    is_child: bool = Field(sa_type=Boolean)
    flags: dict[str, bool] = Field(sa_type=JSON)
    situation_codes: dict[str, object] = Field(sa_type=JSON)
    # The person and the narrative: AES-GCM under the case's data key (see crypto.py).
    sealed: bytes | None = Field(default=None, sa_type=LargeBinary)
    key_id: str | None = Field(default=None, sa_type=String(40))
    wrapped_key: bytes | None = Field(default=None, sa_type=LargeBinary)
    name_index: str | None = Field(default=None, sa_type=String(64), index=True)
    document_index: str | None = Field(default=None, sa_type=String(64), index=True)
    closed_reason: str | None = Field(default=None, sa_type=String(40))
    # Head of this case's hash-chained access log.
    log_seq: int = Field(default=0, sa_type=Integer)
    log_head: str = Field(default="", sa_type=String(64))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Consent(IntakeTable, table=True):
    __tablename__ = "consents"

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="cases.id", max_length=36, index=True)
    scopes: list[str] = Field(sa_type=JSON)
    method: str = Field(sa_type=String(10))
    language: str = Field(sa_type=String(2))
    recorded_by: str = Field(max_length=100)
    recorded_at: datetime = Field(sa_type=DateTime(timezone=True))
    withdrawn_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    withdrawn_by: str | None = Field(default=None, max_length=100)


class Grant(IntakeTable, table=True):
    """An organisation's view of a case through an accepted referral (from referral events)."""

    __tablename__ = "grants"

    referral_id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(max_length=36, index=True)
    org_id: str = Field(max_length=64)
    service_type: str = Field(sa_type=String(20))
    active: bool = Field(default=True, sa_type=Boolean)
    changed_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class TimelineItem(IntakeTable, table=True):
    __tablename__ = "case_timeline"

    ref_id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(max_length=36, index=True)
    kind: str = Field(sa_type=String(10))
    status: str = Field(sa_type=String(20))
    detail: str | None = Field(default=None, sa_type=String(40))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class AccessLog(IntakeTable, table=True):
    """Append-only; each row's hash covers the previous row of the same case."""

    __tablename__ = "access_log"

    case_id: str = Field(primary_key=True, max_length=36)
    seq: int = Field(primary_key=True, sa_type=Integer)
    actor: str = Field(max_length=100)
    org_id: str = Field(max_length=64)
    action: str = Field(sa_type=String(20))
    projection: str = Field(sa_type=String(20))
    reason: str | None = Field(default=None, sa_type=String(200))
    at: datetime = Field(sa_type=DateTime(timezone=True))
    prev_hash: str = Field(sa_type=String(64))
    hash: str = Field(sa_type=String(64))
