"""The directory API: organisations and services, kept by providers, readable as HSDS pages."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from nrm.db import Database
from services.referral.models import Service
from tests.referral.conftest import Harness, add_org, add_service

BASE = "/api/v1/referral"
ADMIN = ("nrm-operator", "admin")
OWNER = ("shelter-women-dushanbe", "provider")


def _service(**overrides: Any) -> dict[str, Any]:
    return {
        "organization_id": "shelter-women-dushanbe",
        "service_type": "shelter",
        "name": "Women's shelter",
        "languages": ["tg", "ru"],
        "genders": ["female"],
        "sensitivities": ["sexual_exploitation"],
        "location_id": "TJ-DU-SHO",
        "capacity_total": 10,
        "capacity_available": 4,
        **overrides,
    }


async def _count_services(h: Harness) -> int:
    async with h.db.transaction() as session:
        return len((await session.exec(select(Service))).all())


async def test_a_provider_publishes_a_service_placed_in_its_region(h: Harness) -> None:
    await add_org(h.db, "shelter-women-dushanbe")
    created = await h.client.post(f"{BASE}/services", json=_service(), headers=h.as_(*OWNER))
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["region_code"], body["district_code"]) == ("TJ-DU", "TJ-DU-SHO")
    assert (body["languages"], body["capacity_available"]) == (["ru", "tg"], 4)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"service_type": "spa"}, "service_type"),
        ({"location_id": "TJ-XX"}, "location_id"),
        ({"capacity_available": -1}, "capacity_available"),
        ({"capacity_available": 11}, "capacity_available"),
        ({"organization_id": "nobody"}, "organization_id"),
    ],
)
async def test_bad_services_are_refused_naming_the_field(
    h: Harness, change: dict[str, Any], field: str
) -> None:
    await add_org(h.db, "shelter-women-dushanbe")
    answer = await h.client.post(f"{BASE}/services", json=_service(**change), headers=h.as_(*ADMIN))
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert field in answer.text
    assert await _count_services(h) == 0


async def test_the_owner_updates_capacity_but_never_below_zero_or_above_total(h: Harness) -> None:
    service_id = await add_service(h.db, "shelter-women-dushanbe", capacity=5)
    url = f"{BASE}/services/{service_id}"
    fine = await h.client.patch(url, json={"capacity_available": 2}, headers=h.as_(*OWNER))
    assert fine.json()["capacity_available"] == 2
    shrunk = await h.client.patch(url, json={"capacity_total": 1}, headers=h.as_(*OWNER))
    assert (shrunk.json()["capacity_total"], shrunk.json()["capacity_available"]) == (1, 1)
    for bad in ({"capacity_available": -1}, {"capacity_available": 2}, {"status": "open"}):
        answer = await h.client.patch(url, json=bad, headers=h.as_(*OWNER))
        assert answer.status_code == 422, bad
    closed = await h.client.patch(url, json={"status": "temporarily_closed"}, headers=h.as_(*OWNER))
    assert closed.json()["status"] == "temporarily_closed"
    missing = await h.client.patch(
        f"{BASE}/services/00000000-0000-0000-0000-000000000000",
        json={"status": "active"},
        headers=h.as_(*ADMIN),
    )
    assert missing.status_code == 404


async def test_lists_carry_cursor_and_hsds_paging_fields(h: Harness) -> None:
    for index in range(5):
        await add_service(h.db, f"org-{index}", service_type="legal_aid")
    await add_service(h.db, "org-x", service_type="medical", place="TJ-SU-KHU")
    first = await h.client.get(
        f"{BASE}/services", params={"service_type": "legal_aid", "limit": 2}, headers=h.as_(*OWNER)
    )
    page = first.json()
    assert (page["total_items"], page["total_pages"], page["page_number"], page["size"]) == (
        5,
        3,
        1,
        2,
    )
    second = await h.client.get(
        f"{BASE}/services",
        params={"service_type": "legal_aid", "limit": 2, "cursor": page["next_cursor"]},
        headers=h.as_(*OWNER),
    )
    assert second.json()["page_number"] == 2
    assert {s["id"] for s in page["items"]}.isdisjoint({s["id"] for s in second.json()["items"]})
    sughd = await h.client.get(
        f"{BASE}/services", params={"region": "TJ-SU"}, headers=h.as_(*OWNER)
    )
    assert [s["service_type"] for s in sughd.json()["items"]] == ["medical"]
    orgs = await h.client.get(f"{BASE}/organizations", headers=h.as_(*OWNER))
    assert orgs.json()["total_items"] == 6


async def test_an_organisation_id_is_taken_once(h: Harness) -> None:
    body = {"id": "ngo-x", "name": "NGO", "organization_type": "ngo"}
    first = await h.client.post(f"{BASE}/organizations", json=body, headers=h.as_(*ADMIN))
    again = await h.client.post(f"{BASE}/organizations", json=body, headers=h.as_(*ADMIN))
    assert (first.status_code, again.status_code) == (201, 409)


async def test_the_database_itself_refuses_negative_capacity(db: Database) -> None:
    service_id = await add_service(db, "org-a", capacity=1)

    async def overdraw() -> None:
        async with db.transaction() as session:
            service = await session.get(Service, service_id)
            assert service is not None
            service.capacity_available = -1
            session.add(service)

    with pytest.raises(IntegrityError):
        await overdraw()
