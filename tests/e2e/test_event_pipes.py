"""A ping goes from intake's outbox over the bus into notify's inbox, end to end."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
import pytest

from gateway.keys import SigningKeys
from nrm.runner import connected_bus, migrate
from nrm.settings import Settings
from services.intake.app import create_app as create_intake
from services.notify.app import create_app as create_notify
from tests.support import PostgresDatabases, bearer, eventually, runtime_for, serving

PINGS = "/api/v1/intake/diagnostics/pings"


async def _receipt(
    notify: httpx.AsyncClient, ping_id: str, headers: dict[str, str]
) -> dict[str, str] | None:
    response = await notify.get(f"/api/v1/notify/diagnostics/pings/{ping_id}", headers=headers)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    found: dict[str, str] = response.json()
    return found


async def _ping_round_trip(settings: Settings, keys: SigningKeys) -> None:
    await migrate(settings, ["intake", "notify"])
    admin = bearer(keys, settings, roles=["admin"], org="org-operator")
    async with connected_bus(settings, "test-pipes") as bus:
        runtime = runtime_for(settings, bus, keys)
        async with (
            serving(create_intake(runtime)) as intake,
            serving(create_notify(runtime)) as notify,
        ):
            sent = await intake.post(PINGS, headers=admin)
            assert sent.status_code == 202, sent.text
            ping_id = sent.json()["ping_id"]

            receipt = await eventually(lambda: _receipt(notify, ping_id, admin))

    assert set(receipt) == {"ping_id", "source_org", "sent_at", "received_at"}
    assert (receipt["ping_id"], receipt["source_org"]) == (ping_id, "org-operator")
    sent_at = datetime.fromisoformat(receipt["sent_at"])
    assert sent_at <= datetime.fromisoformat(receipt["received_at"]), "received after it was sent"


async def test_ping_reaches_notify_in_embedded_mode(
    settings: Settings, signing_keys: SigningKeys
) -> None:
    await _ping_round_trip(settings, signing_keys)


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_ping_reaches_notify_over_rabbitmq_and_postgres(
    tmp_path: Path,
    isolated_rabbit_url: str,
    postgres: PostgresDatabases,
    signing_keys: SigningKeys,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        broker_url=isolated_rabbit_url,
        intake_database_url=await postgres.create("intake"),
        notify_database_url=await postgres.create("notify"),
    )
    await _ping_round_trip(settings, signing_keys)


async def test_a_ping_needs_an_admin(settings: Settings, signing_keys: SigningKeys) -> None:
    await migrate(settings, ["intake"])
    async with connected_bus(settings, "test-pipes") as bus:
        app = create_intake(runtime_for(settings, bus, signing_keys))
        async with serving(app) as intake:
            anonymous = await intake.post(PINGS)
            officer = await intake.post(
                PINGS, headers=bearer(signing_keys, settings, roles=["intake_officer"])
            )
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert officer.status_code == 403
