"""An intake app in-process, and callers from each kind of organisation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.keys import SigningKeys
from nrm.bus import Delivery, InMemoryBus, Subscription
from nrm.db import Database
from nrm.events import envelope_for
from nrm.inbox import EventConsumer
from nrm.runner import migrate
from nrm.settings import Settings
from services.intake.app import create_app
from services.intake.handlers import HANDLERS
from services.referral.events import ReferralAccepted
from tests.support import bearer, runtime_for, serving

CASES = "/api/v1/intake/cases"

# Recognisable values, plainly made up (canaries): any of these found where it must not
# be is a leak.
SECRET_NAME = "Canaryname"
SECRET_FAMILY = "Canaryfamily"
SECRET_PHONE = "+000 00 000 4242"
SECRET_DOCUMENT = "CANARY0000DOC"
SECRET_NARRATIVE = "kept in a basement in Canarytown"
SECRETS = (SECRET_NAME, SECRET_FAMILY, "000 4242", SECRET_DOCUMENT, "Canarytown")


def case_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "case_type": "presumed_trafficking_victim",
        "channel": "border",
        "person": {
            "given_name": SECRET_NAME,
            "family_name": SECRET_FAMILY,
            "birth_date": "1999-01-01",
            "gender": "female",
            "citizenship": "TJ",
            "languages": ["tg", "ru"],
            "phone": SECRET_PHONE,
            "location": {"region": "TJ-SU", "text": "Canary street, near the canary market"},
            "document": {
                "type": "passport",
                "number": SECRET_DOCUMENT,
                "issuing_country": "TJ",
                "held_by_other": True,
            },
        },
        "situation": {
            "exploitation_countries": ["RU"],
            "exploitation_types": ["labour"],
            "control_methods": ["withholds_documents", "debt_bondage"],
            "ilo_indicators": ["retention_of_identity_documents", "debt_bondage"],
            "sector": "F",
            "recruiter_relationship": "agency",
            "narrative": SECRET_NARRATIVE,
        },
        "needs": ["shelter", "medical", "legal_aid"],
        "flags": {"injured": False},
        "consent": {
            "scopes": ["assistance", "referral:shelter", "referral:medical", "referral:legal_aid"],
            "method": "verbal",
            "language": "tg",
        },
    }
    body.update(overrides)
    return body


@dataclass
class Intake:
    http: httpx.AsyncClient
    db: Database
    bus: InMemoryBus
    settings: Settings
    keys: SigningKeys
    published: list[Delivery]

    def as_(self, org: str, *roles: str, subject: str | None = None) -> dict[str, str]:
        return bearer(
            self.keys, self.settings, roles=roles, org=org, subject=subject or f"{org}-user"
        )

    @property
    def police(self) -> dict[str, str]:
        return self.as_("police-dushanbe", "intake_officer")

    async def register(self, **overrides: Any) -> str:
        answer = await self.http.post(CASES, json=case_body(**overrides), headers=self.police)
        assert answer.status_code == 201, answer.text
        case_id: str = answer.json()["id"]
        return case_id

    async def referral_accepted(self, case_id: str, org: str, service_type: str) -> str:
        """As if the referral service said `org` accepted a referral for this case."""
        referral_id = uuid.uuid4()
        event = ReferralAccepted(
            referral_id=referral_id,
            case_id=uuid.UUID(case_id),
            from_org="police-dushanbe",
            to_org=org,
            service_type=service_type,
        )
        envelope = envelope_for(event)
        consumer = EventConsumer("intake", self.db, HANDLERS)
        await consumer(
            Delivery(routing_key=event.type, body=envelope.to_json(), message_id=envelope.id)
        )
        return str(referral_id)


@asynccontextmanager
async def running_intake(settings: Settings, keys: SigningKeys) -> AsyncIterator[Intake]:
    """Intake migrated and serving in-process, every published event recorded."""
    await migrate(settings, ["intake"])
    bus = InMemoryBus()
    await bus.connect()
    everything = Subscription("test-recorder", ("nrm.#",))
    await bus.declare([everything])
    published: list[Delivery] = []

    async def record(delivery: Delivery) -> None:
        published.append(delivery)

    await bus.consume(everything, record)
    app = create_app(runtime_for(settings, bus, keys))
    try:
        async with serving(app) as http:
            yield Intake(http, app.state.db, bus, settings, keys, published)
    finally:
        await bus.close()


@pytest.fixture
async def intake(settings: Settings, signing_keys: SigningKeys) -> AsyncIterator[Intake]:
    async with running_intake(settings, signing_keys) as running:
        yield running
