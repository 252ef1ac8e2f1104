"""Who may do what: every endpoint against every kind of caller.

Something the caller may not see answers 404; a role that may not act, 403; no token, 401.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlmodel import select

from services.referral.models import Referral
from tests.referral.conftest import Harness, add_service, deliver, registered

CALLERS: dict[str, tuple[str, ...] | None] = {
    "referring org": ("police-dushanbe", "intake_officer"),
    "receiving org": ("shelter-women-dushanbe", "provider"),
    "unrelated provider": ("shelter-khujand", "provider"),
    "unrelated referrer": ("ngo-migrant-support", "intake_officer"),
    "admin": ("nrm-operator", "admin"),
    "auditor": ("ombudsman", "auditor"),
    "no token": None,
}


@dataclass
class World:
    shelter: str
    case_id: str


async def _world(h: Harness) -> World:
    shelter = await add_service(h.db, "shelter-women-dushanbe", capacity=100)
    await add_service(
        h.db, "shelter-khujand", place="TJ-SU-KHU", capacity=100, service_type="medical"
    )
    return World(shelter, str(await _fresh_case(h)))


async def _fresh_case(h: Harness) -> uuid.UUID:
    event = registered()
    await deliver(h.db, event)
    return event.case_id


async def _fresh_referral(h: Harness, *, accepted: bool = False) -> str:
    case_id = await _fresh_case(h)
    async with h.db.transaction() as session:
        referral = (
            await session.exec(select(Referral).where(Referral.case_id == str(case_id)))
        ).one()
    if accepted:
        answer = await h.client.post(
            f"/api/v1/referral/referrals/{referral.id}/accept",
            headers=h.as_("shelter-women-dushanbe", "provider"),
        )
        assert answer.status_code == 200
    return referral.id


Request = Callable[[Harness, World, dict[str, str]], Awaitable[Any]]
BASE = "/api/v1/referral"


def _get(path: str) -> Request:
    async def call(h: Harness, w: World, headers: dict[str, str]) -> Any:
        return await h.client.get(
            BASE + path.format(case=w.case_id, shelter=w.shelter), headers=headers
        )

    return call


async def _post_org(h: Harness, w: World, headers: dict[str, str]) -> Any:
    body = {"id": f"org-{uuid.uuid4().hex[:8]}", "name": "A new NGO", "organization_type": "ngo"}
    return await h.client.post(f"{BASE}/organizations", json=body, headers=headers)


async def _post_service(h: Harness, w: World, headers: dict[str, str]) -> Any:
    body = {
        "organization_id": "shelter-women-dushanbe",
        "service_type": "psychosocial",
        "name": "Counselling",
        "location_id": "TJ-DU-SHO",
        "capacity_total": 3,
    }
    return await h.client.post(f"{BASE}/services", json=body, headers=headers)


async def _patch_service(h: Harness, w: World, headers: dict[str, str]) -> Any:
    return await h.client.patch(
        f"{BASE}/services/{w.shelter}", json={"status": "active"}, headers=headers
    )


async def _post_referral(h: Harness, w: World, headers: dict[str, str]) -> Any:
    case_id = await _fresh_case(h)
    body = {"case_id": str(case_id), "service_id": w.shelter}
    return await h.client.post(f"{BASE}/referrals", json=body, headers=headers)


async def _get_referral(h: Harness, w: World, headers: dict[str, str]) -> Any:
    referral_id = await _fresh_referral(h)
    return await h.client.get(f"{BASE}/referrals/{referral_id}", headers=headers)


def _act(action: str, *, accepted: bool = False, body: dict[str, str] | None = None) -> Request:
    async def call(h: Harness, w: World, headers: dict[str, str]) -> Any:
        referral_id = await _fresh_referral(h, accepted=accepted)
        return await h.client.post(
            f"{BASE}/referrals/{referral_id}/{action}", json=body, headers=headers
        )

    return call


# Expected status per caller, in CALLERS' order.
MATRIX: dict[str, tuple[Request, tuple[int, ...]]] = {
    "GET organizations": (_get("/organizations"), (200, 200, 200, 200, 200, 200, 401)),
    "POST organizations": (_post_org, (403, 403, 403, 403, 201, 403, 401)),
    "GET services": (_get("/services"), (200, 200, 200, 200, 200, 200, 401)),
    "POST services": (_post_service, (403, 201, 403, 403, 201, 403, 401)),
    "PATCH services/{id}": (_patch_service, (403, 200, 403, 403, 200, 403, 401)),
    "GET match": (
        _get("/match?case_id={case}&service_type=shelter"),
        (200, 403, 403, 404, 200, 403, 401),
    ),
    "POST referrals": (_post_referral, (201, 403, 403, 404, 201, 403, 401)),
    "GET referrals": (_get("/referrals"), (200, 200, 200, 200, 200, 200, 401)),
    "GET referrals/{id}": (_get_referral, (200, 200, 404, 404, 200, 200, 401)),
    "POST accept": (_act("accept"), (403, 200, 404, 403, 403, 403, 401)),
    "POST decline": (
        _act("decline", body={"reason": "full"}),
        (403, 200, 404, 403, 403, 403, 401),
    ),
    "POST complete": (_act("complete", accepted=True), (403, 200, 404, 403, 403, 403, 401)),
    "POST revoke": (_act("revoke", accepted=True), (200, 403, 403, 404, 403, 403, 401)),
}


@pytest.mark.parametrize("endpoint", list(MATRIX))
async def test_access_matrix(h: Harness, endpoint: str) -> None:
    world = await _world(h)
    request, expected = MATRIX[endpoint]
    got: dict[str, int] = {}
    for caller in CALLERS.values():
        headers = h.as_(*caller) if caller else {}
        answer = await request(h, world, headers)
        got[str(caller)] = answer.status_code
        if answer.status_code >= 400:
            assert answer.headers["content-type"] == "application/problem+json"
    assert got == {str(c): status for c, status in zip(CALLERS.values(), expected, strict=True)}


async def test_a_provider_sees_only_its_own_incoming_and_outgoing_referrals(h: Harness) -> None:
    await _world(h)
    lists = {}
    for name, caller in CALLERS.items():
        if caller is None:
            continue
        answer = await h.client.get(f"{BASE}/referrals", headers=h.as_(*caller))
        lists[name] = len(answer.json()["items"])
    assert lists == {
        "referring org": 1,
        "receiving org": 1,
        "unrelated provider": 0,
        "unrelated referrer": 0,
        "admin": 1,
        "auditor": 1,
    }
