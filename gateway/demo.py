"""The demo organisations, users and machine client of CONTRACT.md (fictional, dev only)."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import identity
from gateway.models import ApiClient, Organization, User

DEMO_PASSWORD = "demo-password"  # noqa: S105 (published in CONTRACT.md; `nrm demo` refuses prod)
DEMO_CLIENT_SECRET = "demo-secret"  # noqa: S105 (likewise)

# Stable ids: the other services' demo data (directory, fund) refer to them.
ORGANIZATIONS = {
    "nrm-operator": ("Open NRM operator", "operator"),
    "police-dushanbe": ("Police anti-trafficking unit, Dushanbe", "state"),
    "ngo-migrant-support": ("Migrant support NGO, Dushanbe (hotline)", "civil_society"),
    "shelter-women-dushanbe": ("Women's shelter, Dushanbe", "civil_society"),
    "shelter-khujand": ("Shelter, Khujand", "civil_society"),
    "legal-aid-dushanbe": ("Legal aid centre, Dushanbe", "civil_society"),
    "hospital-dushanbe": ("City hospital, Dushanbe", "state"),
    "ministry-labour": ("Ministry of Labour, Migration and Employment", "state"),
    "ministry-interior": ("Ministry of Internal Affairs", "state"),
    "ombudsman": ("Office of the Ombudsman", "state"),
}

USERS = {
    "admin": ("nrm-operator", ["admin"], "en"),
    "intake.police": ("police-dushanbe", ["intake_officer"], "tg"),
    "intake.ngo": ("ngo-migrant-support", ["intake_officer"], "ru"),
    "caseworker.shelter": ("shelter-women-dushanbe", ["case_worker", "provider"], "ru"),
    "provider.khujand": ("shelter-khujand", ["provider"], "tg"),
    "provider.legal": ("legal-aid-dushanbe", ["provider"], "ru"),
    "provider.medical": ("hospital-dushanbe", ["provider"], "ru"),
    "fund.officer": ("ministry-labour", ["fund_officer"], "tg"),
    "commission.state": ("ministry-interior", ["commission_member"], "tg"),
    "commission.ngo": ("ngo-migrant-support", ["commission_member"], "ru"),
    "auditor": ("ombudsman", ["auditor"], "en"),
}

CLIENT_ID = "ngo-system"


async def load(session: AsyncSession) -> list[str]:
    """Create what is missing; leave what exists alone (idempotent)."""
    for org_id, (name, sector) in ORGANIZATIONS.items():
        if await session.get(Organization, org_id) is None:
            await identity.create_organization(session, org_id=org_id, name=name, sector=sector)
    await session.flush()
    for username, (org_id, roles, language) in USERS.items():
        if (await session.exec(select(User).where(User.username == username))).first() is None:
            await identity.create_user(
                session,
                username=username,
                password=DEMO_PASSWORD,
                org_id=org_id,
                roles=roles,
                language=language,
            )
    if await session.get(ApiClient, CLIENT_ID) is None:
        session.add(
            ApiClient(
                client_id=CLIENT_ID,
                secret_hash=await identity.hash_secret(DEMO_CLIENT_SECRET),
                org_id="shelter-khujand",
                roles=["provider", "system"],
                scopes=["referrals:read", "referrals:write"],
            )
        )
    logins = ", ".join(USERS)
    return [
        f"users ({DEMO_PASSWORD}): {logins}",
        f"machine client: {CLIENT_ID} / {DEMO_CLIENT_SECRET}",
    ]
