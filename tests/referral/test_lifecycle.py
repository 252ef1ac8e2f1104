"""The referral lifecycle through the API: answers, re-routing, SLA expiry, history."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlmodel import select

from services.referral.config import ReferralSettings
from services.referral.models import Referral, Service
from services.referral.scheduler import expire_overdue
from tests.referral.conftest import Harness, add_service, deliver, events_of, registered

REFERRALS = "/api/v1/referral/referrals"
POLICE = ("police-dushanbe", "intake_officer")
SHELTER = ("shelter-women-dushanbe", "provider")
KHUJAND = ("shelter-khujand", "provider")


async def _case(h: Harness, **facts: Any) -> uuid.UUID:
    event = registered(**facts)
    await deliver(h.db, event)
    return event.case_id


async def _referrals(h: Harness, case_id: uuid.UUID) -> list[Referral]:
    async with h.db.transaction() as session:
        rows = await session.exec(
            select(Referral)
            .where(Referral.case_id == str(case_id))
            .order_by(Referral.attempt, Referral.created_at)  # type: ignore[arg-type]
        )
        return list(rows.all())


async def _available(h: Harness, service_id: str) -> int:
    async with h.db.transaction() as session:
        service = await session.get(Service, service_id)
        assert service is not None
        return service.capacity_available


async def _two_shelters(h: Harness) -> tuple[str, str]:
    first = await add_service(h.db, "shelter-women-dushanbe", place="TJ-DU-SHO", capacity=2)
    second = await add_service(h.db, "shelter-khujand", place="TJ-SU-KHU", capacity=2)
    return first, second


async def test_accepted_referral_completes_and_gives_the_place_back(h: Harness) -> None:
    shelter, _ = await _two_shelters(h)
    [referral] = await _referrals(h, await _case(h))
    assert await _available(h, shelter) == 1

    accepted = await h.client.post(f"{REFERRALS}/{referral.id}/accept", headers=h.as_(*SHELTER))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    completed = await h.client.post(f"{REFERRALS}/{referral.id}/complete", headers=h.as_(*SHELTER))
    assert completed.json()["status"] == "completed"
    assert await _available(h, shelter) == 2
    assert len(await events_of(h.db, "nrm.referral.referral.accepted.v1")) == 1
    assert len(await events_of(h.db, "nrm.referral.referral.completed.v1")) == 1


async def test_declined_referral_goes_to_next_provider(h: Harness) -> None:
    first, second = await _two_shelters(h)
    case_id = await _case(h)
    [referral] = await _referrals(h, case_id)
    assert referral.service_id == first

    declined = await h.client.post(
        f"{REFERRALS}/{referral.id}/decline",
        json={"reason": "no_female_staff"},
        headers=h.as_(*SHELTER),
    )

    assert declined.status_code == 200, declined.text
    old, new = await _referrals(h, case_id)
    assert (old.status, old.reason) == ("declined", "no_female_staff")
    assert (new.service_id, new.status, new.attempt, new.previous_id) == (
        second,
        "pending",
        2,
        old.id,
    )
    assert await _available(h, first) == 2
    assert await _available(h, second) == 1
    [event] = await events_of(h.db, "nrm.referral.referral.declined.v1")
    assert event["reason"] == "no_female_staff"


async def test_accept_after_decline_is_refused_and_changes_nothing(h: Harness) -> None:
    await _two_shelters(h)
    case_id = await _case(h)
    [referral] = await _referrals(h, case_id)
    await h.client.post(
        f"{REFERRALS}/{referral.id}/decline", json={"reason": "full"}, headers=h.as_(*SHELTER)
    )
    late = await h.client.post(f"{REFERRALS}/{referral.id}/accept", headers=h.as_(*SHELTER))
    assert late.status_code == 409
    assert late.headers["content-type"] == "application/problem+json"
    assert [r.status for r in await _referrals(h, case_id)] == ["declined", "pending"]


async def test_decline_needs_a_reason_code(h: Harness) -> None:
    await _two_shelters(h)
    [referral] = await _referrals(h, await _case(h))
    answer = await h.client.post(
        f"{REFERRALS}/{referral.id}/decline", json={}, headers=h.as_(*SHELTER)
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["body", "reason"]


async def test_referral_past_its_sla_expires_is_rerouted_and_escalated(h: Harness) -> None:
    first, second = await _two_shelters(h)
    case_id = await _case(h, urgency="critical")
    settings = ReferralSettings()

    assert await expire_overdue(h.db, now=h.clock() + timedelta(hours=1), settings=settings) == 0
    assert await expire_overdue(h.db, now=h.clock() + timedelta(hours=3), settings=settings) == 1

    old, new = await _referrals(h, case_id)
    assert (old.status, old.reason) == ("expired", "sla")
    assert (new.status, new.service_id) == ("pending", second)
    [escalated] = await events_of(h.db, "nrm.referral.referral.escalated.v1")
    assert escalated == {
        "referral_id": old.id,
        "case_id": str(case_id),
        "from_org": "police-dushanbe",
        "service_type": "shelter",
        "level": 1,
        "next_org": "shelter-khujand",
    }
    assert await _available(h, first) == 2


async def test_after_the_last_attempt_the_commission_is_told_instead_of_looping(h: Harness) -> None:
    for index in range(4):
        await add_service(h.db, f"shelter-{index}", capacity=1)
    case_id = await _case(h)
    settings = ReferralSettings(max_attempts=2)
    now = h.clock()
    for _ in range(4):
        now += timedelta(days=8)
        await expire_overdue(h.db, now=now, settings=settings)

    referrals = await _referrals(h, case_id)
    assert [r.status for r in referrals] == ["expired", "expired"]
    escalations = await events_of(h.db, "nrm.referral.referral.escalated.v1")
    assert [(e["level"], e["next_org"] is None) for e in escalations] == [(1, False), (2, True)]


async def test_history_says_who_did_what_and_when(h: Harness) -> None:
    await _two_shelters(h)
    [referral] = await _referrals(h, await _case(h))
    await h.client.post(f"{REFERRALS}/{referral.id}/accept", headers=h.as_(*SHELTER))
    detail = await h.client.get(f"{REFERRALS}/{referral.id}", headers=h.as_(*POLICE))
    history = detail.json()["history"]
    assert [(e["action"], e["actor"], e["actor_org"], e["status"]) for e in history] == [
        ("created", "system", None, "pending"),
        ("accept", "user@shelter-women-dushanbe", "shelter-women-dushanbe", "accepted"),
    ]
    assert all(e["at"] for e in history)


async def test_manual_referral_replays_its_idempotency_key(h: Harness) -> None:
    shelter, _ = await _two_shelters(h)
    case_id = await _case(
        h, needs=("legal_aid",), scopes=("referral:shelter", "referral:legal_aid")
    )
    body = {"case_id": str(case_id), "service_id": shelter}
    headers = {**h.as_(*POLICE), "Idempotency-Key": "k-1"}

    first = await h.client.post(REFERRALS, json=body, headers=headers)
    again = await h.client.post(REFERRALS, json=body, headers=headers)
    other = await h.client.post(REFERRALS, json={**body, "urgency": "low"}, headers=headers)

    assert first.status_code == 201, first.text
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    referred = [r for r in await _referrals(h, case_id) if r.service_id == shelter]
    assert len(referred) == 1
    assert await _available(h, shelter) == 1


async def test_bad_manual_referrals_are_refused_and_write_nothing(h: Harness) -> None:
    shelter = await add_service(h.db, "shelter-women-dushanbe", capacity=1)
    closed = await add_service(h.db, "shelter-khujand", status="temporarily_closed")
    full = await add_service(h.db, "shelter-full", capacity=1, available=0)
    case_id = await _case(h, needs=(), scopes=("referral:shelter",))
    no_consent = await _case(h, needs=(), scopes=())
    cases = {
        "unknown case": ({"case_id": str(uuid.uuid4()), "service_id": shelter}, 404, "case_id"),
        "unknown service": (
            {"case_id": str(case_id), "service_id": str(uuid.uuid4())},
            422,
            "service_id",
        ),
        "inactive service": ({"case_id": str(case_id), "service_id": closed}, 409, "service_id"),
        "no free place": ({"case_id": str(case_id), "service_id": full}, 409, "service_id"),
        "no consent": ({"case_id": str(no_consent), "service_id": shelter}, 409, "service_id"),
    }
    for name, (body, status, field) in cases.items():
        answer = await h.client.post(REFERRALS, json=body, headers=h.as_(*POLICE))
        assert answer.status_code == status, name
        assert answer.headers["content-type"] == "application/problem+json", name
        assert field in answer.text, name
    async with h.db.transaction() as session:
        assert (await session.exec(select(Referral))).all() == []
    assert await _available(h, shelter) == 1


async def test_lists_filter_by_direction_and_status_with_cursor_paging(h: Harness) -> None:
    await add_service(h.db, "shelter-women-dushanbe", capacity=10)
    for _ in range(3):
        await _case(h)
    incoming = await h.client.get(
        REFERRALS,
        params={"direction": "incoming", "status": "pending", "limit": 2},
        headers=h.as_(*SHELTER),
    )
    page = incoming.json()
    assert len(page["items"]) == 2
    rest = await h.client.get(
        REFERRALS,
        params={"direction": "incoming", "limit": 2, "cursor": page["next_cursor"]},
        headers=h.as_(*SHELTER),
    )
    assert len(rest.json()["items"]) == 1
    assert rest.json()["next_cursor"] is None
    outgoing = await h.client.get(
        REFERRALS, params={"direction": "outgoing"}, headers=h.as_(*SHELTER)
    )
    assert outgoing.json()["items"] == []
    accepted = await h.client.get(REFERRALS, params={"status": "accepted"}, headers=h.as_(*POLICE))
    assert accepted.json()["items"] == []
