"""Intake's API bodies: HTCDS and ILO names for case facts; limits on every field."""

from __future__ import annotations

import functools
from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

import pycountry
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from nrm.clock import UtcDatetime, utcnow
from nrm.vocabulary import SERVICE_TYPES, AgeBand, CaseType, Gender, ServiceType, Urgency


@functools.cache
def _iso_codes() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """ISO 3166-1 countries, ISO 639-1 languages and ISO 3166-2 subdivisions, as sets:
    a pycountry lookup searches its indexes anew on every call, several per body."""
    return (
        frozenset(country.alpha_2 for country in pycountry.countries),
        frozenset(getattr(language, "alpha_2", "") for language in pycountry.languages) - {""},
        frozenset(subdivision.code for subdivision in pycountry.subdivisions),
    )


def _country(code: str) -> str:
    if code not in _iso_codes()[0]:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return code


def _language(code: str) -> str:
    if code not in _iso_codes()[1]:
        raise ValueError("not an ISO 639-1 language code")
    return code


def _region(code: str) -> str:
    parts = code.split("-")
    _country(parts[0])
    if len(parts) >= 2 and "-".join(parts[:2]) not in _iso_codes()[2]:
        raise ValueError("not an ISO 3166-2 subdivision")
    return code


def _consent_scope(scope: str) -> str:
    kind, _, service_type = scope.partition(":")
    if scope in ("assistance", "law_enforcement", "statistics"):
        return scope
    if kind == "referral" and service_type in SERVICE_TYPES:
        return scope
    raise ValueError(
        "not a consent scope (assistance, law_enforcement, statistics, referral:<type>)"
    )


CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$"), AfterValidator(_country)]
LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2}$"), AfterValidator(_language)]
RegionCode = Annotated[
    str, Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3}){0,2}$"), AfterValidator(_region)
]
ConsentScopeCode = Annotated[str, Field(max_length=40), AfterValidator(_consent_scope)]
Name = Annotated[str, Field(min_length=1, max_length=100)]

Channel = Literal[
    "hotline", "ngo_outreach", "police", "border", "consulate", "self_referral", "other"
]
ExploitationType = Literal[
    "labour", "sexual", "forced_marriage", "begging", "criminal_activity", "organ_removal", "other"
]
# HTCDS "methods of control".
ControlMethod = Literal[
    "debt_bondage",
    "takes_earnings",
    "threats",
    "physical_abuse",
    "sexual_abuse",
    "psychological_abuse",
    "restricts_movement",
    "withholds_documents",
    "withholds_necessities",
    "psychoactive_substances",
    "excessive_working_hours",
    "threats_to_family",
    "false_promises",
    "other",
]
# The ILO's 11 indicators of forced labour.
IloIndicator = Literal[
    "abuse_of_vulnerability",
    "deception",
    "restriction_of_movement",
    "isolation",
    "physical_and_sexual_violence",
    "intimidation_and_threats",
    "retention_of_identity_documents",
    "withholding_of_wages",
    "debt_bondage",
    "abusive_working_and_living_conditions",
    "excessive_overtime",
]
IsicSection = Literal[
    "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K",
    "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U",
]  # fmt: skip
RecruiterRelationship = Literal[
    "family", "partner", "friend", "acquaintance", "stranger", "agency", "employer", "other",
    "unknown",
]  # fmt: skip
DocumentType = Literal[
    "passport", "national_id", "migration_card", "work_permit", "birth_certificate", "other"
]
CloseReason = Literal[
    "assisted",
    "returned_home",
    "referred_elsewhere",
    "declined_assistance",
    "lost_contact",
    "duplicate",
    "other",
]
EraseReason = Literal["person_request", "registered_in_error", "retention_expired", "court_order"]
# Why someone opened a case (X-Access-Reason). Codes, not free text: the access log is
# kept in clear and shown to auditors, and a typed reason tends to name people.
AccessReasonCode = Literal[
    "case_work",
    "referral",
    "safeguarding",
    "legal_request",
    "audit",
    "data_subject_request",
    "other",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Location(Strict):
    region: RegionCode | None = None
    text: str | None = Field(default=None, max_length=500)


class IdentityDocument(Strict):
    type: DocumentType
    number: str | None = Field(default=None, min_length=1, max_length=50)
    issuing_country: CountryCode | None = None
    held_by_other: bool = False


class Person(Strict):
    given_name: Name | None = None
    family_name: Name | None = None
    aliases: list[Name] = Field(default_factory=list, max_length=10)
    birth_date: date | None = None
    estimated_age: int | None = Field(default=None, ge=0, le=120)
    gender: Gender = "unknown"
    citizenship: CountryCode | None = None
    languages: list[LanguageCode] = Field(default_factory=list, max_length=10)
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 ()-]{5,31}$")
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    location: Location = Field(default_factory=Location)
    document: IdentityDocument | None = None

    @model_validator(mode="after")
    def _birth_date_is_past(self) -> Person:
        if self.birth_date is not None and self.birth_date > utcnow().date():
            raise ValueError("birth_date is in the future")
        return self

    def age(self) -> int | None:
        if self.birth_date is not None:
            today = utcnow().date()
            before_birthday = (today.month, today.day) < (
                self.birth_date.month,
                self.birth_date.day,
            )
            return today.year - self.birth_date.year - before_birthday
        return self.estimated_age

    def age_band(self) -> AgeBand:
        age = self.age()
        if age is None:
            return "unknown"
        for upper, band in (
            (11, "0-11"),
            (17, "12-17"),
            (24, "18-24"),
            (34, "25-34"),
            (49, "35-49"),
        ):
            if age <= upper:
                return band  # type: ignore[return-value]
        return "50+"


class Situation(Strict):
    recruitment_countries: list[CountryCode] = Field(default_factory=list, max_length=10)
    transit_countries: list[CountryCode] = Field(default_factory=list, max_length=10)
    exploitation_countries: list[CountryCode] = Field(default_factory=list, max_length=10)
    exploitation_types: list[ExploitationType] = Field(default_factory=list, max_length=7)
    control_methods: list[ControlMethod] = Field(default_factory=list, max_length=14)
    ilo_indicators: list[IloIndicator] = Field(default_factory=list, max_length=11)
    sector: IsicSection | None = None
    recruiter_relationship: RecruiterRelationship = "unknown"
    narrative: str | None = Field(default=None, max_length=10_000)


class Flags(Strict):
    pregnant: bool = False
    injured: bool = False  # needs medical care now
    immediate_danger: bool = False
    disability: bool = False


class ConsentIn(Strict):
    scopes: list[ConsentScopeCode] = Field(min_length=1, max_length=14)
    method: Literal["verbal", "written"]
    language: LanguageCode
    recorded_at: AwareDatetime | None = None


class CaseFacts(Strict):
    """What triage reads: no names, only facts and flags."""

    case_type: CaseType
    situation: Situation
    flags: Flags
    is_child: bool


def child_flag_agrees(person: Person, is_child: bool | None) -> bool:
    """Whether the person is a child; a child flagged adult is a contradiction (ValueError)."""
    age = person.age()
    if is_child is False and age is not None and age < 18:
        raise ValueError("is_child is false but the person's age is under 18")
    return bool(is_child) or (age is not None and age < 18)


class CaseCreate(Strict):
    case_type: CaseType
    channel: Channel
    person: Person
    situation: Situation = Field(default_factory=Situation)
    needs: list[ServiceType] = Field(default_factory=list, max_length=10)
    flags: Flags = Field(default_factory=Flags)
    is_child: bool | None = None
    consent: ConsentIn

    @model_validator(mode="after")
    def _consistent(self) -> CaseCreate:
        child_flag_agrees(self.person, self.is_child)
        return self

    def facts(self) -> CaseFacts:
        is_child = child_flag_agrees(self.person, self.is_child)
        return CaseFacts(
            case_type=self.case_type, situation=self.situation, flags=self.flags, is_child=is_child
        )


class UrgencyOverride(Strict):
    urgency: Urgency
    reason: str = Field(min_length=5, max_length=500)


class CaseUpdate(Strict):
    person: Person | None = None
    situation: Situation | None = None
    needs: list[ServiceType] | None = Field(default=None, max_length=10)
    flags: Flags | None = None
    is_child: bool | None = None
    urgency_override: UrgencyOverride | None = None


class CaseClose(Strict):
    reason: CloseReason


class ConsentOut(BaseModel):
    id: UUID
    scopes: list[str]
    method: str
    language: str
    recorded_by: str
    recorded_at: UtcDatetime
    withdrawn_at: UtcDatetime | None = None


class TimelineEntry(BaseModel):
    kind: Literal["referral", "payment"]
    ref_id: str
    status: str
    detail: str | None = None
    updated_at: UtcDatetime


class CaseSummary(BaseModel):
    """What lists show: no personal data, so a list reads none."""

    id: UUID
    org_id: str
    case_type: str
    channel: str
    status: str
    urgency: str
    urgency_rule: str
    sensitivity: list[str]
    needs: list[str]
    region: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class CaseView(CaseSummary):
    projection: str
    person: dict[str, Any] | None = None
    situation: dict[str, Any] | None = None
    flags: dict[str, bool] | None = None
    consents: list[ConsentOut] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)


class DuplicateMatch(BaseModel):
    match: Literal["name_and_birth_date", "document"]
    org_id: str
    case_id: UUID | None = Field(
        default=None, description="Only for the caller's own organisation's cases."
    )


class AccessLogEntry(BaseModel):
    seq: int
    actor: str
    org_id: str
    action: str
    projection: str
    reason: str | None
    at: UtcDatetime
    hash: str


class PingSent(BaseModel):
    ping_id: UUID
