"""Who may see a case, and how much of it.

The registering organisation sees all of it. An organisation with an accepted referral
sees the projection its service type needs, while consent for that referral stands.
Auditors see no personal data. Anyone else gets 404, so case ids cannot be probed.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.errors import NotFound
from services.intake.models import Case, Consent, Grant

Projection = Literal["owner", "legal", "medical", "shelter", "auditor"]
OWNER_ROLES = ("intake_officer", "case_worker", "admin")
PROVIDER_ROLES = ("provider", "case_worker")

# What a service type needs to know; broader projections include the narrower ones.
PROJECTION_OF_SERVICE: dict[str, Projection] = {"legal_aid": "legal", "medical": "medical"}
BREADTH: dict[Projection, int] = {"shelter": 1, "medical": 2, "legal": 3, "owner": 4, "auditor": 0}

SHELTER_PERSON_FIELDS = ("given_name", "gender", "languages")
SAFETY_FLAGS = ("immediate_danger",)
MEDICAL_FLAGS = ("immediate_danger", "injured", "pregnant", "disability")


def owns(case: Case, principal: Principal) -> bool:
    return case.org_id == principal.org and principal.has_role(*OWNER_ROLES)


async def projection_for(
    session: AsyncSession, case: Case, principal: Principal
) -> Projection | None:
    if owns(case, principal):
        return "owner"
    if principal.has_role("auditor"):
        return "auditor"
    if not principal.has_role(*PROVIDER_ROLES) or case.status == "erased":
        return None
    grants = await session.exec(
        select(Grant.service_type).where(
            Grant.case_id == case.id,
            Grant.org_id == principal.org,
            Grant.active == True,  # noqa: E712
        )
    )
    consented = await consented_scopes(session, case.id)
    projections: list[Projection] = [
        PROJECTION_OF_SERVICE.get(service_type, "shelter")
        for service_type in grants.all()
        if f"referral:{service_type}" in consented
    ]
    if not projections:
        return None
    return max(projections, key=lambda projection: BREADTH[projection])


async def visible_case(
    session: AsyncSession, case_id: str, principal: Principal, *, for_update: bool = False
) -> tuple[Case, Projection]:
    case = await session.get(Case, case_id, with_for_update=for_update)
    projection = await projection_for(session, case, principal) if case else None
    if case is None or projection is None:
        raise NotFound("No such case.")
    return case, projection


async def consented_scopes(session: AsyncSession, case_id: str) -> set[str]:
    consents = await session.exec(
        select(Consent.scopes).where(Consent.case_id == case_id, Consent.withdrawn_at == None)  # noqa: E711
    )
    return {scope for scopes in consents.all() for scope in scopes}


def project(
    projection: Projection,
    person: dict[str, Any],
    situation: dict[str, Any],
    flags: dict[str, bool],
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, bool] | None]:
    """The person, situation and flags a projection may see."""
    if projection == "owner":
        return person, situation, flags
    if projection == "auditor":
        return None, None, None
    shown = {field: person.get(field) for field in SHELTER_PERSON_FIELDS}
    shown["age_band"] = person.get("age_band")
    flag_names = SAFETY_FLAGS if projection == "shelter" else MEDICAL_FLAGS
    shown_flags = {name: flags.get(name, False) for name in flag_names}
    if projection != "legal":
        return shown, None, shown_flags
    shown["family_name"] = person.get("family_name")
    shown["citizenship"] = person.get("citizenship")
    shown["document"] = person.get("document")
    return shown, situation, shown_flags
