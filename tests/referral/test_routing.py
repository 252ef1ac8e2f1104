"""Routing from intake's events, and the case view kept from them."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import select

from nrm.db import Database
from services.intake.events import CaseClosed, CaseErased, CaseUpdated, ConsentWithdrawn
from services.referral.models import CaseView, Referral, Service
from tests.referral.conftest import START, add_org, add_service, deliver, events_of, registered


async def _referrals(db: Database, case_id: uuid.UUID) -> list[Referral]:
    async with db.transaction() as session:
        rows = await session.exec(
            select(Referral).where(Referral.case_id == str(case_id)).order_by(Referral.created_at)  # type: ignore[arg-type]
        )
        return list(rows.all())


async def _available(db: Database, service_id: str) -> int:
    async with db.transaction() as session:
        service = await session.get(Service, service_id)
        assert service is not None
        return service.capacity_available


async def test_registration_refers_each_consented_need_to_the_best_provider(db: Database) -> None:
    shelter = await add_service(db, "shelter-women-dushanbe", capacity=3)
    await add_service(db, "shelter-khujand", place="TJ-SU-KHU", capacity=3)
    legal = await add_service(db, "legal-aid-dushanbe", service_type="legal_aid")
    await add_service(db, "hospital-dushanbe", service_type="medical")
    event = registered(
        needs=("shelter", "legal_aid", "medical"), scopes=("referral:shelter", "referral:legal_aid")
    )

    await deliver(db, event)

    referrals = await _referrals(db, event.case_id)
    assert sorted((r.service_type, r.service_id, r.status) for r in referrals) == [
        ("legal_aid", legal, "pending"),
        ("shelter", shelter, "pending"),
    ]
    assert all(r.from_org == "police-dushanbe" for r in referrals)
    assert await _available(db, shelter) == 2  # a shelter place is held
    created = await events_of(db, "nrm.referral.referral.created.v1")
    assert {e["service_type"] for e in created} == {"shelter", "legal_aid"}
    assert set(created[0]) == {
        "referral_id",
        "case_id",
        "from_org",
        "to_org",
        "service_type",
        "urgency",
        "due_at",
    }


async def test_sla_follows_urgency(db: Database) -> None:
    await add_service(db, "shelter-women-dushanbe")
    event = registered(urgency="critical")
    await deliver(db, event, at=START)
    [referral] = await _referrals(db, event.case_id)
    assert referral.due_at is not None
    assert (
        timedelta(hours=1, minutes=59)
        < referral.due_at.replace(tzinfo=None) - referral.created_at.replace(tzinfo=None)
        <= timedelta(hours=2)
    )


async def test_the_same_registration_twice_refers_once(db: Database) -> None:
    await add_service(db, "shelter-women-dushanbe")
    event = registered()
    event_id = await deliver(db, event)
    await deliver(db, event, event_id=event_id)  # redelivered
    await deliver(db, event)  # republished under a new id
    assert len(await _referrals(db, event.case_id)) == 1


async def test_an_organisation_with_auto_routing_off_gets_no_referrals(db: Database) -> None:
    await add_org(db, "police-dushanbe", auto_route=False)
    await add_service(db, "shelter-women-dushanbe")
    event = registered()
    await deliver(db, event)
    assert await _referrals(db, event.case_id) == []


async def test_no_provider_at_all_escalates_to_the_commission(db: Database) -> None:
    await add_service(db, "shelter-women-dushanbe", capacity=2, available=0)
    event = registered()
    await deliver(db, event)
    [referral] = await _referrals(db, event.case_id)
    assert (referral.status, referral.to_org) == ("escalated", None)
    [escalated] = await events_of(db, "nrm.referral.referral.escalated.v1")
    assert escalated["next_org"] is None
    assert escalated["referral_id"] == referral.id


async def test_consent_withdrawal_revokes_and_frees_the_place(db: Database) -> None:
    shelter = await add_service(db, "shelter-women-dushanbe", capacity=1)
    legal = await add_service(db, "legal-aid-dushanbe", service_type="legal_aid")
    event = registered(needs=("shelter", "legal_aid"))
    await deliver(db, event)
    assert await _available(db, shelter) == 0
    withdrawal = ConsentWithdrawn(
        case_id=event.case_id,
        org_id=event.org_id,
        consent_id=uuid.uuid4(),
        scopes=["referral:shelter"],
    )

    first = await deliver(db, withdrawal)
    await deliver(db, withdrawal, event_id=first)
    await deliver(db, withdrawal)  # the same withdrawal again, another id

    statuses = {r.service_id: r.status for r in await _referrals(db, event.case_id)}
    assert statuses == {shelter: "revoked", legal: "pending"}
    assert await _available(db, shelter) == 1
    assert len(await events_of(db, "nrm.referral.referral.revoked.v1")) == 1


async def test_withdrawal_before_registration_prevents_the_referral(db: Database) -> None:
    await add_service(db, "shelter-women-dushanbe")
    event = registered()
    await deliver(
        db,
        ConsentWithdrawn(
            case_id=event.case_id,
            org_id=event.org_id,
            consent_id=uuid.uuid4(),
            scopes=["referral:shelter"],
        ),
    )
    await deliver(db, event)
    assert await _referrals(db, event.case_id) == []


async def test_closure_before_registration_prevents_routing(db: Database) -> None:
    await add_service(db, "shelter-women-dushanbe")
    event = registered()
    await deliver(db, CaseClosed(case_id=event.case_id, org_id=event.org_id, reason="resolved"))
    await deliver(db, event)
    assert await _referrals(db, event.case_id) == []


async def test_erasure_revokes_accepted_referrals_and_forgets_the_codes(db: Database) -> None:
    shelter = await add_service(db, "shelter-women-dushanbe", capacity=1)
    event = registered()
    await deliver(db, event)
    await deliver(db, CaseErased(case_id=event.case_id, org_id=event.org_id, reason="request"))
    [referral] = await _referrals(db, event.case_id)
    assert (referral.status, referral.reason) == ("revoked", "case_erased")
    assert await _available(db, shelter) == 1
    async with db.transaction() as session:
        view = await session.get(CaseView, str(event.case_id))
    assert view is not None
    assert (view.status, view.language, view.region, view.gender) == (
        "erased",
        None,
        None,
        "unknown",
    )


async def test_an_older_update_arriving_late_does_not_overwrite_a_newer_one(db: Database) -> None:
    event = registered(needs=())
    await deliver(db, event, at=START)

    def update(urgency: str) -> CaseUpdated:
        return CaseUpdated.model_validate(
            {
                "case_id": event.case_id,
                "org_id": event.org_id,
                "changed": ["urgency"],
                "urgency": urgency,
                "sensitivity": [],
                "needs": [],
            }
        )

    await deliver(db, update("critical"), at=START + timedelta(minutes=10))
    await deliver(db, update("low"), at=START + timedelta(minutes=5))
    async with db.transaction() as session:
        view = await session.get(CaseView, str(event.case_id))
    assert view is not None
    assert view.urgency == "critical"


async def test_a_need_added_by_an_update_is_referred(db: Database) -> None:
    legal = await add_service(db, "legal-aid-dushanbe", service_type="legal_aid")
    event = registered(needs=(), scopes=("referral:legal_aid",))
    await deliver(db, event, at=START)
    update = CaseUpdated.model_validate(
        {
            "case_id": event.case_id,
            "org_id": event.org_id,
            "changed": ["needs"],
            "urgency": "high",
            "sensitivity": [],
            "needs": ["legal_aid"],
        }
    )
    await deliver(db, update, at=START + timedelta(minutes=1))
    await deliver(db, update, at=START + timedelta(minutes=2))  # said again: still one
    assert [r.service_id for r in await _referrals(db, event.case_id)] == [legal]


async def test_erasure_before_registration_keeps_nothing_and_refers_nothing(db: Database) -> None:
    await add_service(db, "shelter-women-dushanbe")
    event = registered()
    await deliver(db, CaseErased(case_id=event.case_id, org_id=event.org_id, reason="request"))
    await deliver(db, event)
    assert await _referrals(db, event.case_id) == []
    async with db.transaction() as session:
        view = await session.get(CaseView, str(event.case_id))
    assert view is not None
    assert (view.status, view.region, view.language) == ("erased", None, None)
