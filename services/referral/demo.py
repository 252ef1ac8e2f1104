"""The demo directory (fictional, dev only): every service type in Dushanbe, Khujand,
Bokhtar and Khorog, some with no free place. Organisation ids are gateway/demo.py's."""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.clock import utcnow
from services.referral.geography import BY_CODE
from services.referral.models import Organization, Service, pack

DEMO_NAMESPACE = uuid.UUID("8d7f6c1e-3b0a-4f59-9a53-2f3c4d1e0b7a")

ORGANIZATIONS: dict[str, tuple[str, str]] = {
    "police-dushanbe": ("Police anti-trafficking unit, Dushanbe", "law_enforcement"),
    "ngo-migrant-support": ("Migrant support NGO, Dushanbe (hotline)", "ngo"),
    "shelter-women-dushanbe": ("Women's shelter, Dushanbe", "ngo"),
    "shelter-khujand": ("Shelter, Khujand", "ngo"),
    "legal-aid-dushanbe": ("Legal aid centre, Dushanbe", "legal_service"),
    "hospital-dushanbe": ("City hospital, Dushanbe", "health"),
}

# key: (organization, type, name, location, languages, genders, children, flags, places)
SERVICES: dict[str, tuple[str, str, str, str, str, str, bool, str, int]] = {
    "shelter-dushanbe": (
        "shelter-women-dushanbe",
        "shelter",
        "Women's shelter",
        "TJ-DU-SHO",
        "tg ru",
        "female",
        False,
        "sexual_exploitation",
        12,
    ),
    "psy-dushanbe": (
        "shelter-women-dushanbe",
        "psychosocial",
        "Counselling",
        "TJ-DU-SHO",
        "tg ru en",
        "",
        False,
        "sexual_exploitation",
        20,
    ),
    "shelter-khujand": (
        "shelter-khujand",
        "shelter",
        "Shelter Khujand",
        "TJ-SU-KHU",
        "tg uz ru",
        "",
        True,
        "child",
        8,
    ),
    "psy-khujand": (
        "shelter-khujand",
        "psychosocial",
        "Counselling Khujand",
        "TJ-SU-KHU",
        "tg uz",
        "",
        True,
        "child",
        10,
    ),
    "child-khujand": (
        "shelter-khujand",
        "child_protection",
        "Child protection Khujand",
        "TJ-SU-KHU",
        "tg uz ru",
        "",
        True,
        "child",
        4,
    ),
    "legal-dushanbe": (
        "legal-aid-dushanbe",
        "legal_aid",
        "Legal aid",
        "TJ-DU-SIN",
        "tg ru en",
        "",
        True,
        "",
        30,
    ),
    "legal-bokhtar": (
        "legal-aid-dushanbe",
        "legal_aid",
        "Legal aid, Bokhtar desk",
        "TJ-KT-BOK",
        "tg ru",
        "",
        False,
        "",
        0,
    ),
    "interpret-dushanbe": (
        "legal-aid-dushanbe",
        "interpretation",
        "Interpreters",
        "TJ-DU-SIN",
        "tg ru en uz",
        "",
        True,
        "",
        5,
    ),
    "medical-dushanbe": (
        "hospital-dushanbe",
        "medical",
        "Emergency care",
        "TJ-DU-SHO",
        "tg ru",
        "",
        True,
        "sexual_exploitation",
        40,
    ),
    "medical-khorog": (
        "hospital-dushanbe",
        "medical",
        "Outreach clinic, Khorog",
        "TJ-GB-KHO",
        "tg ru",
        "",
        True,
        "",
        0,
    ),
    "return-dushanbe": (
        "ngo-migrant-support",
        "return_travel",
        "Return travel",
        "TJ-DU-SIN",
        "tg ru",
        "",
        True,
        "",
        15,
    ),
    "subsistence-dushanbe": (
        "ngo-migrant-support",
        "subsistence",
        "Emergency allowance",
        "TJ-DU-SIN",
        "tg ru",
        "",
        True,
        "",
        25,
    ),
    "reintegration-bokhtar": (
        "ngo-migrant-support",
        "reintegration",
        "Reintegration",
        "TJ-KT-BOK",
        "tg",
        "",
        False,
        "",
        6,
    ),
    "reintegration-khorog": (
        "ngo-migrant-support",
        "reintegration",
        "Reintegration, Khorog",
        "TJ-GB-KHO",
        "tg ru",
        "",
        False,
        "",
        0,
    ),
    "shelter-bokhtar": (
        "ngo-migrant-support",
        "shelter",
        "Transit shelter, Bokhtar",
        "TJ-KT-BOK",
        "tg",
        "male",
        False,
        "labour_exploitation",
        0,
    ),
    "shelter-khorog": (
        "ngo-migrant-support",
        "shelter",
        "Transit shelter, Khorog",
        "TJ-GB-KHO",
        "tg ru",
        "",
        False,
        "",
        3,
    ),
    "child-dushanbe": (
        "ngo-migrant-support",
        "child_protection",
        "Child helpline",
        "TJ-DU-SIN",
        "tg ru",
        "",
        True,
        "child",
        10,
    ),
    "other-khorog": (
        "ngo-migrant-support",
        "other",
        "Hotline outreach, Khorog",
        "TJ-GB-KHO",
        "tg ru",
        "",
        True,
        "",
        0,
    ),
}


def demo_service_id(key: str) -> str:
    return str(uuid.uuid5(DEMO_NAMESPACE, key))


async def load(session: AsyncSession) -> list[str]:
    """Create what is missing; leave what exists (and its live capacity) alone."""
    now = utcnow()
    for org_id, (name, kind) in ORGANIZATIONS.items():
        if await session.get(Organization, org_id) is None:
            session.add(Organization(id=org_id, name=name, organization_type=kind))
    await session.flush()
    added = 0
    for key, (org, kind, name, place, langs, genders, kids, flags, places) in SERVICES.items():
        service_id = demo_service_id(key)
        if await session.get(Service, service_id) is not None:
            continue
        location = BY_CODE[place]
        session.add(
            Service(
                id=service_id,
                organization_id=org,
                service_type=kind,
                name=name,
                languages=pack(langs.split()),
                genders=pack(genders.split()),
                accepts_children=kids,
                sensitivities=pack(flags.split()),
                location_id=place,
                region_code=location.region_code,
                district_code=place if location.kind == "district" else None,
                capacity_total=places,
                capacity_available=places,
                created_at=now,
                updated_at=now,
            )
        )
        added += 1
    return [f"referral directory: {len(SERVICES)} services ({added} new)"]
