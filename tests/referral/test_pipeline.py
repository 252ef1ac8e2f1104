"""The whole way over real RabbitMQ and PostgreSQL: intake's event in, referral events out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.keys import SigningKeys
from nrm.bus.base import Delivery, Subscription
from nrm.events import envelope_for
from nrm.runner import connected_bus, migrate
from nrm.settings import Settings
from services.referral.app import create_app
from services.referral.geography import BY_CODE
from services.referral.models import Organization, Service, pack
from tests.referral.conftest import registered
from tests.support import PostgresDatabases, bearer, eventually, runtime_for, serving

BASE = "/api/v1/referral"
WATCH = Subscription("e2e-referral-watch", ("nrm.referral.#",))


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_registered_case_on_the_bus_is_referred_declined_rerouted_accepted_completed(
    tmp_path: Path,
    isolated_rabbit_url: str,
    postgres: PostgresDatabases,
    signing_keys: SigningKeys,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        broker_url=isolated_rabbit_url,
        referral_database_url=await postgres.create("referral"),
        _env_file=None,
    )
    await migrate(settings, ["referral"])
    seen: list[dict[str, Any]] = []

    async def watch(delivery: Delivery) -> None:
        seen.append({"type": delivery.routing_key, **json.loads(delivery.body)["data"]})

    def token(org: str, role: str) -> dict[str, str]:
        return bearer(signing_keys, settings, roles=[role], org=org, subject=f"u@{org}")

    async with connected_bus(settings, "test-referral-e2e") as bus:
        await bus.declare([WATCH])
        await bus.consume(WATCH, watch)
        app = create_app(runtime_for(settings, bus, signing_keys))
        async with serving(app) as client:
            async with app.state.db.transaction() as session:
                for org, place in (
                    ("shelter-women-dushanbe", "TJ-DU-SHO"),
                    ("shelter-khujand", "TJ-SU-KHU"),
                ):
                    session.add(Organization(id=org, name=org, organization_type="ngo"))
                    await session.flush()
                    session.add(
                        Service(
                            id=f"00000000-0000-0000-0000-{len(org):012d}",
                            organization_id=org,
                            service_type="shelter",
                            name=org,
                            languages=pack(["tg"]),
                            location_id=place,
                            region_code=BY_CODE[place].region_code,
                            district_code=place,
                            capacity_total=3,
                            capacity_available=3,
                        )
                    )
            event = registered()
            envelope = envelope_for(event)
            # As intake's outbox relay would publish it.
            await bus.publish(envelope.type, envelope.to_json(), message_id=envelope.id)

            police = token("police-dushanbe", "intake_officer")

            async def outgoing(status: str) -> list[dict[str, Any]] | None:
                answer = await client.get(
                    f"{BASE}/referrals",
                    params={"direction": "outgoing", "status": status},
                    headers=police,
                )
                items: list[dict[str, Any]] = answer.json()["items"]
                return items or None

            [first] = await eventually(lambda: outgoing("pending"))
            assert first["to_org"] == "shelter-women-dushanbe"
            declined = await client.post(
                f"{BASE}/referrals/{first['id']}/decline",
                json={"reason": "no_place_for_children"},
                headers=token("shelter-women-dushanbe", "provider"),
            )
            assert declined.status_code == 200, declined.text
            [second] = await eventually(lambda: outgoing("pending"))
            assert second["to_org"] == "shelter-khujand"
            khujand = token("shelter-khujand", "provider")
            accepted = await client.post(f"{BASE}/referrals/{second['id']}/accept", headers=khujand)
            assert accepted.status_code == 200, accepted.text
            completed = await client.post(
                f"{BASE}/referrals/{second['id']}/complete", headers=khujand
            )
            assert completed.json()["status"] == "completed"

            async def all_published() -> list[str] | None:
                types = [e["type"].split(".")[-2] for e in seen]
                return types if len(types) >= 5 else None

            types = await eventually(all_published)
    assert types == ["created", "declined", "created", "accepted", "completed"]
    assert all(e["case_id"] == str(event.case_id) for e in seen)
    # Thin: ids and codes only.
    assert set().union(*(e.keys() for e in seen)) <= {
        "type",
        "referral_id",
        "case_id",
        "from_org",
        "to_org",
        "service_type",
        "urgency",
        "due_at",
        "reason",
    }
