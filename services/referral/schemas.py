"""Referral's API bodies."""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from nrm.clock import UtcDatetime
from nrm.paging import Page
from nrm.vocabulary import Gender, ServiceType, Urgency

T = TypeVar("T")

# HTCDS organisation types.
OrganizationType = Literal[
    "ngo",
    "law_enforcement",
    "health",
    "central_government",
    "local_government",
    "immigration",
    "legal_service",
    "international_organization",
    "other",
]
ServiceStatus = Literal["active", "inactive", "temporarily_closed"]
ReferralStatus = Literal[
    "pending", "accepted", "declined", "expired", "completed", "revoked", "escalated"
]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
OrgId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]
PlaceCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3}){0,2}$")]


class DirectoryPage(Page[T], Generic[T]):
    """A cursor page that also carries Open Referral HSDS 3's paging fields."""

    total_items: int
    total_pages: int
    page_number: int
    size: int


class OrganizationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: OrgId
    name: str = Field(min_length=1, max_length=200)
    organization_type: OrganizationType
    email: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=50)
    active: bool = True
    auto_route: bool = True


class OrganizationPublic(BaseModel):
    id: str
    name: str
    organization_type: str
    email: str | None
    phone: str | None
    active: bool
    auto_route: bool


class ServiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organization_id: OrgId
    service_type: ServiceType
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    status: ServiceStatus = "active"
    languages: list[Language] = Field(default_factory=list, max_length=20)
    genders: list[Gender] = Field(default_factory=list, max_length=5)
    min_age: int | None = Field(default=None, ge=0, le=130)
    max_age: int | None = Field(default=None, ge=0, le=130)
    accepts_children: bool = False
    sensitivities: list[Code] = Field(default_factory=list, max_length=20)
    accessibility: str | None = Field(default=None, max_length=400)
    hours: str | None = Field(default=None, max_length=400)
    location_id: PlaceCode
    capacity_total: int = Field(default=0, ge=0, le=100_000)
    capacity_available: int | None = Field(default=None, ge=0, le=100_000)

    @model_validator(mode="after")
    def _consistent(self) -> ServiceCreate:
        if self.capacity_available is not None and self.capacity_available > self.capacity_total:
            raise ValueError("capacity_available must not exceed capacity_total")
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError("min_age must not exceed max_age")
        return self


class ServiceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: ServiceStatus | None = None
    capacity_total: int | None = Field(default=None, ge=0, le=100_000)
    capacity_available: int | None = Field(default=None, ge=0, le=100_000)


class ServicePublic(BaseModel):
    id: str
    organization_id: str
    service_type: str
    name: str
    description: str | None
    status: str
    languages: list[str]
    genders: list[str]
    min_age: int | None
    max_age: int | None
    accepts_children: bool
    sensitivities: list[str]
    accessibility: str | None
    hours: str | None
    location_id: str
    region_code: str
    district_code: str | None
    capacity_total: int
    capacity_available: int


class ScoreParts(BaseModel):
    region: int
    language: int
    capacity: int
    sensitivity: int


class MatchPublic(BaseModel):
    service_id: str
    organization_id: str
    service_name: str
    service_type: str
    region_code: str
    district_code: str | None
    capacity_available: int
    score: int
    parts: ScoreParts


class ReferralCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_id: UUID
    service_id: UUID
    urgency: Urgency | None = None


class ReferralAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Code | None = None


class ReferralDecline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Code


class HistoryEntry(BaseModel):
    at: UtcDatetime
    actor: str
    actor_org: str | None
    action: str
    status: str
    reason: str | None


class ReferralPublic(BaseModel):
    id: str
    case_id: str
    from_org: str
    to_org: str | None
    service_id: str | None
    service_type: str
    urgency: str
    status: str
    attempt: int
    previous_id: str | None
    reason: str | None
    due_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ReferralDetail(ReferralPublic):
    history: list[HistoryEntry]
