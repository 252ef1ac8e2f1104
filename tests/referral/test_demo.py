"""The demo directory: every kind of help in four cities, owned by the demo organisations."""

from __future__ import annotations

from sqlmodel import select

from gateway.demo import ORGANIZATIONS as GATEWAY_ORGANIZATIONS
from nrm.db import Database
from nrm.vocabulary import SERVICE_TYPES
from services.referral.demo import load
from services.referral.models import Organization, Service


async def test_demo_directory_covers_every_service_type_and_loads_idempotently(
    db: Database,
) -> None:
    async with db.transaction() as session:
        await load(session)
    async with db.transaction() as session:
        service = (await session.exec(select(Service))).first()
        assert service is not None
        service.capacity_available = 0  # a provider's live update survives a reload
        kept = service.id
    async with db.transaction() as session:
        await load(session)
    async with db.transaction() as session:
        services = (await session.exec(select(Service))).all()
        organizations = (await session.exec(select(Organization.id))).all()
        reloaded = await session.get(Service, kept)

    assert {s.service_type for s in services} == set(SERVICE_TYPES)
    assert {s.district_code for s in services} >= {"TJ-SU-KHU", "TJ-KT-BOK", "TJ-GB-KHO"}
    assert any(s.region_code == "TJ-DU" for s in services)
    assert any(s.capacity_total == 0 for s in services)
    assert len(services) == len({s.id for s in services})
    assert set(organizations) <= set(GATEWAY_ORGANIZATIONS)
    assert reloaded is not None
    assert reloaded.capacity_available == 0
