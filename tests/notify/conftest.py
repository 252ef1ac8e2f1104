"""A running notify service with a bus to publish events on, and helpers to drive it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from gateway.events import UserChanged
from gateway.keys import SigningKeys
from nrm import migrations
from nrm.bus import create_bus
from nrm.bus.base import Bus
from nrm.db import Database
from nrm.events import Envelope, Event, envelope_for
from nrm.settings import Settings
from services.notify.app import SERVICE, create_app
from services.notify.models import Delivery, Notice, Recipient
from services.referral.events import ReferralCreated
from tests.support import bearer, eventually, runtime_for, serving

SHELTER = "org-shelter"
POLICE = "org-police"
FAST = {
    "NRM_NOTIFY_RETRY_BASE_SECONDS": "0.05",
    "NRM_NOTIFY_RETRY_MAX_SECONDS": "0.2",
    "NRM_NOTIFY_POLL_SECONDS": "0.05",
    "NRM_NOTIFY_WEBHOOK_TIMEOUT_SECONDS": "1",
    "NRM_NOTIFY_MAX_ATTEMPTS": "4",
}


@dataclass
class Notify:
    client: httpx.AsyncClient
    bus: Bus
    settings: Settings
    keys: SigningKeys
    db: Database
    app: FastAPI

    def token(
        self, *, roles: tuple[str, ...] = ("system",), org: str = SHELTER, subject: str = "u-1"
    ) -> dict[str, str]:
        return bearer(self.keys, self.settings, roles=roles, org=org, subject=subject)

    async def publish(self, event: Event, *, event_id: str | None = None) -> Envelope:
        envelope = envelope_for(event, event_id=event_id)
        await self.bus.publish(envelope.type, envelope.to_json(), message_id=envelope.id)
        return envelope

    async def add_user(
        self,
        user_id: str,
        *,
        org: str = SHELTER,
        roles: tuple[str, ...] = ("provider",),
        language: str = "en",
    ) -> None:
        await self.publish(
            UserChanged(
                user_id=user_id, org_id=org, roles=list(roles), language=language, active=True
            )
        )
        await eventually(lambda: self._recipient(user_id, language))

    async def _recipient(self, user_id: str, language: str) -> Recipient | None:
        async with self.db.transaction() as session:
            found = await session.get(Recipient, user_id)
        return found if found is not None and found.language == language else None

    async def subscribe(
        self, url: str, event_types: list[str] | None = None, org: str = SHELTER
    ) -> dict[str, Any]:
        answer = await self.client.post(
            "/api/v1/notify/subscriptions",
            json={"url": url, "event_types": event_types or ["nrm.referral.referral.created.v1"]},
            headers=self.token(org=org),
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    async def fanned_out(self, envelope: Envelope) -> Notice:
        """Wait until notify has handled the event: every delivery it makes then exists."""

        async def notice() -> Notice | None:
            async with self.db.transaction() as session:
                return await session.get(Notice, envelope.id)

        return await eventually(notice)

    async def deliveries_of(self, envelope: Envelope) -> list[Delivery]:
        async with self.db.transaction() as session:
            query = select(Delivery).where(Delivery.event_id == envelope.id)
            return list((await session.exec(query)).all())

    async def deliveries(self, subscription_id: str, org: str = SHELTER) -> list[dict[str, Any]]:
        answer = await self.client.get(
            f"/api/v1/notify/subscriptions/{subscription_id}/deliveries",
            headers=self.token(org=org),
        )
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])


def referral_created(to_org: str = SHELTER, **overrides: Any) -> ReferralCreated:
    fields: dict[str, Any] = {
        "referral_id": uuid.uuid4(),
        "case_id": uuid.uuid4(),
        "from_org": POLICE,
        "to_org": to_org,
        "service_type": "shelter",
        "urgency": "high",
        "due_at": datetime.now(UTC) + timedelta(hours=4),
    }
    return ReferralCreated(**(fields | overrides))


@pytest.fixture
def notify_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def allowlist() -> str:
    return "127.0.0.1"


@pytest.fixture
async def notify(
    settings: Settings, signing_keys: SigningKeys, notify_env: None, allowlist: str
) -> AsyncIterator[Notify]:
    settings = settings.model_copy(update={"notify_webhook_allowlist": allowlist})
    async with notify_running(settings, signing_keys) as running:
        yield running


@asynccontextmanager
async def notify_running(settings: Settings, keys: SigningKeys) -> AsyncIterator[Notify]:
    """Notify alone: its own migrations and queue, so other services' state doesn't matter."""
    db = Database(settings.database_url("notify"))
    try:
        await migrations.upgrade(db, SERVICE.migrations)
    finally:
        await db.dispose()
    bus = create_bus(settings.broker_url, delivery_limit=5, connection_name="test-notify")
    await bus.connect()
    try:
        assert SERVICE.subscription is not None
        await bus.declare([SERVICE.subscription])
        app = create_app(runtime_for(settings, bus, keys))
        async with serving(app) as client:
            yield Notify(client, bus, settings, keys, app.state.db, app)
    finally:
        await bus.close()
