"""Intake registers a case → referral routes it → the shelter's system gets a signed webhook.

All three services run as apps of their own, each on its own PostgreSQL database,
talking only through a real RabbitMQ.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook

from gateway.keys import SigningKeys
from nrm.runner import connected_bus, load_demo, migrate, service_factories
from nrm.settings import Component, Settings
from services.referral.demo import SERVICES as DEMO_SERVICES
from tests.notify.conftest import FAST
from tests.notify.receiver import receiving
from tests.support import PostgresDatabases, bearer, runtime_for, serving

SHELTER_ORGS = sorted({row[0] for row in DEMO_SERVICES.values() if row[1] == "shelter"})


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_a_registered_case_reaches_the_shelters_system_as_a_signed_cloudevent(
    tmp_path: Path,
    isolated_rabbit_url: str,
    postgres: PostgresDatabases,
    signing_keys: SigningKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    services: tuple[Component, ...] = ("intake", "referral", "notify")
    settings = Settings(
        data_dir=tmp_path,
        broker_url=isolated_rabbit_url,
        notify_webhook_allowlist="127.0.0.1",
        **{f"{s}_database_url": await postgres.create(s) for s in services},  # type: ignore[arg-type]
    )
    await migrate(settings, services)
    await load_demo(settings, ["referral"])
    admin = bearer(signing_keys, settings, roles=["admin"], org="nrm-operator")
    police = bearer(signing_keys, settings, roles=["intake_officer"], org="police-dushanbe")

    async with (
        connected_bus(settings, "test-full-path") as bus,
        receiving() as receiver,
    ):
        runtime = runtime_for(settings, bus, signing_keys)
        apps = {name: service_factories()[name](runtime) for name in services}
        async with (
            serving(apps["intake"]) as intake,
            serving(apps["referral"]),
            serving(apps["notify"]) as notify,
        ):
            secrets = {}
            for org in SHELTER_ORGS:
                subscribed = await notify.post(
                    "/api/v1/notify/subscriptions",
                    headers=admin,
                    json={
                        "url": receiver.url,
                        "event_types": ["nrm.referral.referral.created.v1"],
                        "org_id": org,
                    },
                )
                assert subscribed.status_code == 201, subscribed.text
                secrets[org] = subscribed.json()["secret"]

            registered = await intake.post(
                "/api/v1/intake/cases",
                headers=police,
                json={
                    "case_type": "presumed_trafficking_victim",
                    "channel": "border",
                    "person": {
                        "given_name": "Malika",
                        "gender": "female",
                        "estimated_age": 22,
                        "languages": ["tg"],
                        "location": {"region": "TJ-SU"},
                    },
                    "needs": ["shelter"],
                    "flags": {"immediate_danger": True},
                    "consent": {
                        "scopes": ["assistance", "referral:shelter"],
                        "method": "verbal",
                        "language": "tg",
                    },
                },
            )
            assert registered.status_code == 201, registered.text
            await asyncio.wait_for(receiver.arrived.wait(), 15)

    request = receiver.requests[0]
    event = JSONFormat().read(None, request.body)
    data = event.get_data()
    assert isinstance(data, dict)
    org = data["to_org"]
    payload = Webhook(secrets[org]).verify(request.body, request.headers)
    assert payload["type"] == "nrm.referral.referral.created.v1"
    assert payload["data"]["case_id"] == registered.json()["id"]
    assert payload["data"]["urgency"] == "critical"
    assert "Malika" not in request.body.decode()
    uuid.UUID(payload["id"])
