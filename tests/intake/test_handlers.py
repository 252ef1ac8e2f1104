"""Referral and fund events become grants and timeline entries, whatever their order."""

from __future__ import annotations

import json
import uuid

import pytest

from nrm.bus import Delivery, Rejected
from nrm.events import Event, envelope_for
from nrm.inbox import EventConsumer
from services.fund.events import DisbursementPaid
from services.intake.handlers import HANDLERS
from services.referral.events import ReferralAccepted, ReferralCompleted
from tests.intake.conftest import CASES, Intake

SHELTER = ("shelter-khujand", "provider")


async def _deliver(intake: Intake, event: Event) -> None:
    envelope = envelope_for(event)
    await EventConsumer("intake", intake.db, HANDLERS)(
        Delivery(routing_key=event.type, body=envelope.to_json(), message_id=envelope.id)
    )


def _referral(
    case_id: str, referral_id: uuid.UUID, cls: type[ReferralAccepted | ReferralCompleted]
) -> Event:
    return cls(
        referral_id=referral_id,
        case_id=uuid.UUID(case_id),
        from_org="police-dushanbe",
        to_org="shelter-khujand",
        service_type="shelter",
    )


async def test_a_completed_referral_closes_the_view_even_if_acceptance_arrives_late(
    intake: Intake,
) -> None:
    case_id = await intake.register()
    referral_id = uuid.uuid4()
    await _deliver(intake, _referral(case_id, referral_id, ReferralCompleted))
    await _deliver(intake, _referral(case_id, referral_id, ReferralAccepted))

    seen = await intake.http.get(f"{CASES}/{case_id}", headers=intake.as_(*SHELTER))
    assert seen.status_code == 404
    owner = (await intake.http.get(f"{CASES}/{case_id}", headers=intake.police)).json()
    assert owner["timeline"][0]["status"] == "completed"


async def test_the_timeline_shows_referrals_and_payments(intake: Intake) -> None:
    case_id = await intake.register()
    await intake.referral_accepted(case_id, "shelter-khujand", "shelter")
    await _deliver(
        intake,
        DisbursementPaid(
            request_id=uuid.uuid4(),
            disbursement_id=uuid.uuid4(),
            case_id=uuid.UUID(case_id),
            org_id="ministry-labour",
            amount_minor=50_000,
            currency="TJS",
        ),
    )
    timeline = (await intake.http.get(f"{CASES}/{case_id}", headers=intake.police)).json()[
        "timeline"
    ]
    assert sorted((t["kind"], t["status"]) for t in timeline) == [
        ("payment", "paid"),
        ("referral", "accepted"),
    ]


async def test_a_malformed_referral_event_is_rejected_for_the_dead_letter_queue(
    intake: Intake,
) -> None:
    envelope = envelope_for(_referral(str(uuid.uuid4()), uuid.uuid4(), ReferralAccepted))
    body = envelope.model_dump(mode="json")
    body["data"]["service_type"] = "teleportation"
    delivery = Delivery(
        routing_key=envelope.type, body=json.dumps(body).encode(), message_id=envelope.id
    )
    with pytest.raises(Rejected, match="service_type"):
        await EventConsumer("intake", intake.db, HANDLERS)(delivery)
