"""A referral app and database for tests, with a clock the test turns."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from gateway.keys import SigningKeys
from nrm.bus import InMemoryBus
from nrm.bus.base import Delivery
from nrm.db import Database
from nrm.events import Event, envelope_for
from nrm.inbox import EventConsumer
from nrm.outbox import OutboxMessage
from nrm.settings import Settings
from services.intake.events import CaseRegistered
from services.referral.app import create_app
from services.referral.handlers import HANDLERS
from services.referral.models import Organization, Service, pack
from tests.support import bearer, migrated_database, runtime_for, serving

START = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


async def deliver(
    db: Database, event: Event, *, event_id: str | None = None, at: datetime | None = None
) -> str:
    """Hand an event to referral's consumer as the bus would."""
    envelope = envelope_for(event, event_id=event_id, now=at)
    consumer = EventConsumer("referral", db, HANDLERS)
    await consumer(Delivery(envelope.type, envelope.to_json(), envelope.id))
    return envelope.id


def registered(
    case_id: uuid.UUID | None = None,
    *,
    org_id: str = "police-dushanbe",
    needs: tuple[str, ...] = ("shelter",),
    scopes: tuple[str, ...] | None = None,
    **facts: Any,
) -> CaseRegistered:
    data: dict[str, Any] = {
        "case_id": case_id or uuid.uuid4(),
        "org_id": org_id,
        "case_type": "presumed_trafficking_victim",
        "urgency": "high",
        "sensitivity": [],
        "needs": list(needs),
        "region": "TJ-DU",
        "language": "tg",
        "gender": "female",
        "age_band": "25-34",
        "consent_scopes": list(scopes if scopes is not None else [f"referral:{n}" for n in needs]),
    }
    data.update(facts)
    return CaseRegistered.model_validate(data)


async def add_org(db: Database, org_id: str, *, auto_route: bool = True) -> None:
    async with db.transaction() as session:
        if await session.get(Organization, org_id) is None:
            session.add(
                Organization(id=org_id, name=org_id, organization_type="ngo", auto_route=auto_route)
            )


async def add_service(
    db: Database,
    org_id: str,
    *,
    service_type: str = "shelter",
    place: str = "TJ-DU-SHO",
    languages: tuple[str, ...] = ("tg", "ru"),
    genders: tuple[str, ...] = (),
    accepts_children: bool = False,
    sensitivities: tuple[str, ...] = (),
    capacity: int = 5,
    available: int | None = None,
    status: str = "active",
    min_age: int | None = None,
    max_age: int | None = None,
    service_id: str | None = None,
) -> str:
    from services.referral.geography import BY_CODE

    await add_org(db, org_id)
    location = BY_CODE[place]
    service_id = service_id or str(uuid.uuid4())
    async with db.transaction() as session:
        session.add(
            Service(
                id=service_id,
                organization_id=org_id,
                service_type=service_type,
                name=f"{service_type} of {org_id}",
                status=status,
                languages=pack(languages),
                genders=pack(genders),
                accepts_children=accepts_children,
                sensitivities=pack(sensitivities),
                location_id=place,
                region_code=location.region_code,
                district_code=place if location.kind == "district" else None,
                capacity_total=capacity,
                capacity_available=capacity if available is None else available,
                min_age=min_age,
                max_age=max_age,
            )
        )
    return service_id


async def events_of(db: Database, event_type: str) -> list[dict[str, Any]]:
    import json

    async with db.transaction() as session:
        rows = await session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.type == event_type)
            .order_by(OutboxMessage.created_at)  # type: ignore[arg-type]
        )
        return [json.loads(row.body)["data"] for row in rows.all()]


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = await migrated_database(settings.database_url("referral"), "referral")
    yield database
    await database.dispose()


@dataclass
class Harness:
    client: httpx.AsyncClient
    app: FastAPI
    clock: Clock
    keys: SigningKeys
    settings: Settings
    tokens: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    @property
    def db(self) -> Database:
        database: Database = self.app.state.db
        return database

    def as_(self, org: str, *roles: str) -> dict[str, str]:
        key = (org, ",".join(roles))
        if key not in self.tokens:
            self.tokens[key] = bearer(
                self.keys, self.settings, roles=roles, org=org, subject=f"user@{org}"
            )
        return self.tokens[key]


HarnessFactory = Callable[[Settings], Any]


@pytest.fixture
async def h(settings: Settings, signing_keys: SigningKeys) -> AsyncIterator[Harness]:
    """The referral app on SQLite and the in-memory bus; its scheduler sleeps (tests drive it)."""
    await (await migrated_database(settings.database_url("referral"), "referral")).dispose()
    bus = InMemoryBus()
    await bus.connect()
    app = create_app(runtime_for(settings, bus, signing_keys))
    clock = Clock()
    app.state.clock = clock
    async with serving(app) as client:
        yield Harness(client, app, clock, signing_keys, settings)
    await bus.close()
