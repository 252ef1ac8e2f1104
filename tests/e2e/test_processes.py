"""The platform as an operator runs it: `nrm up`, and `nrm serve` per component."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.keys import SigningKeys
from nrm.settings import SERVICES, Settings
from tests.e2e.processes import free_port, nrm_process, run_nrm, wait_ready
from tests.support import PostgresDatabases, bearer


def test_nrm_up_serves_all_five_components_ready(tmp_path: Path) -> None:
    port = free_port()
    env = {"NRM_DATA_DIR": str(tmp_path / "var")}
    base = f"http://127.0.0.1:{port}"
    with nrm_process("up", "--port", str(port), env=env, log=tmp_path / "up.log") as process:
        wait_ready(f"{base}/readyz", timeout=30, process=process)
        for service in SERVICES:
            answer = httpx.get(f"{base}/api/v1/{service}/readyz", timeout=5)
            assert answer.status_code == 200, (service, answer.text)
            assert answer.json()["checks"] == {"database": "ok", "bus": "ok"}
        jwks = httpx.get(f"{base}/.well-known/jwks.json", timeout=5).json()
        assert jwks["keys"]
        assert all("d" not in key for key in jwks["keys"]), "private parts never leave"


@pytest.fixture
def split_platform(
    tmp_path: Path, isolated_rabbit_url: str, postgres: PostgresDatabases
) -> Iterator[tuple[str, Settings]]:
    """Each component its own process, on PostgreSQL and RabbitMQ, behind a gateway."""
    import asyncio

    urls = {c: asyncio.run(postgres.create(c)) for c in ("gateway", *SERVICES)}
    ports = {c: free_port() for c in urls}
    data_dir = tmp_path / "var"
    env = {
        "NRM_DATA_DIR": str(data_dir),
        "NRM_BROKER_URL": isolated_rabbit_url,
        "NRM_GATEWAY_URL": f"http://127.0.0.1:{ports['gateway']}",
        **{f"NRM_{c.upper()}_DATABASE_URL": url for c, url in urls.items()},
        **{f"NRM_{c.upper()}_URL": f"http://127.0.0.1:{ports[c]}" for c in SERVICES},
    }
    run_nrm("migrate", "all", env=env)
    with ExitStack() as stack:
        for component, port in ports.items():
            process = stack.enter_context(
                nrm_process(
                    "serve",
                    component,
                    "--port",
                    str(port),
                    env=env,
                    log=tmp_path / f"{component}.log",
                )
            )
            wait_ready(f"http://127.0.0.1:{port}/readyz", process=process)
        yield f"http://127.0.0.1:{ports['gateway']}", Settings(data_dir=data_dir)


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_split_processes_carry_a_ping_through_the_gateway(
    split_platform: tuple[str, Settings],
) -> None:
    gateway, settings = split_platform
    # The gateway generated its development key in the shared data dir: sign with it.
    admin = bearer(SigningKeys.load(settings), settings, roles=["admin"])
    with httpx.Client(base_url=gateway, timeout=10) as client:
        for service in SERVICES:
            assert client.get(f"/api/v1/{service}/readyz").status_code == 200
        sent = client.post("/api/v1/intake/diagnostics/pings", headers=admin)
        assert sent.status_code == 202, sent.text
        assert sent.headers["x-request-id"]
        ping_id = sent.json()["ping_id"]
        receipt_url = f"/api/v1/notify/diagnostics/pings/{ping_id}"
        wait_ready_with(client, receipt_url, admin)


def wait_ready_with(client: httpx.Client, url: str, headers: dict[str, str]) -> None:
    import time

    deadline = time.monotonic() + 15
    while (answer := client.get(url, headers=headers)).status_code == 404:
        assert time.monotonic() < deadline, "the ping never reached notify"
        time.sleep(0.1)
    assert answer.status_code == 200, answer.text


DEMO_USER_OF_ORG = {
    "shelter-khujand": "provider.khujand",
    "shelter-women-dushanbe": "caseworker.shelter",
    "legal-aid-dushanbe": "provider.legal",
    "hospital-dushanbe": "provider.medical",
}


def test_a_case_registered_through_nrm_up_reaches_a_shelter_that_sees_it(
    tmp_path: Path,
) -> None:
    """The whole way, as a person would use `make run`: token, case, referral, accept, read."""
    port = free_port()
    env = {"NRM_DATA_DIR": str(tmp_path / "var")}
    base = f"http://127.0.0.1:{port}"
    with (
        nrm_process("up", "--demo", "--port", str(port), env=env, log=tmp_path / "up.log") as up,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        wait_ready(f"{base}/readyz", timeout=60, process=up)

        def login(username: str) -> dict[str, str]:
            answer = http.post(
                "/auth/token",
                data={"grant_type": "password", "username": username, "password": "demo-password"},
            )
            assert answer.status_code == 200, answer.text
            return {"Authorization": f"Bearer {answer.json()['access_token']}"}

        police = login("intake.police")
        case = http.post(
            "/api/v1/intake/cases",
            headers=police,
            json={
                "case_type": "presumed_trafficking_victim",
                "channel": "border",
                "person": {
                    "given_name": "Test",
                    "gender": "female",
                    "estimated_age": 24,
                    "languages": ["tg"],
                    "location": {"region": "TJ-SU"},
                },
                "needs": ["shelter"],
                "consent": {
                    "scopes": ["assistance", "referral:shelter"],
                    "method": "verbal",
                    "language": "tg",
                },
            },
        )
        assert case.status_code == 201, case.text
        case_id = case.json()["id"]

        referral = _eventually_json(
            lambda: http.get(
                "/api/v1/referral/referrals", params={"direction": "outgoing"}, headers=police
            ),
            lambda body: next((r for r in body["items"] if r["case_id"] == case_id), None),
        )
        provider = login(DEMO_USER_OF_ORG[referral["to_org"]])
        accepted = http.post(
            f"/api/v1/referral/referrals/{referral['id']}/accept", headers=provider
        )
        assert accepted.status_code == 200, accepted.text

        view = _eventually_json(
            lambda: http.get(f"/api/v1/intake/cases/{case_id}", headers=provider),
            lambda body: body if body.get("projection") == "shelter" else None,
        )
        assert view["person"]["given_name"] == "Test"
        # Told through notify's own consumer, which may run after intake's: wait for it.
        told = _eventually_json(
            lambda: http.get("/api/v1/notify/notifications", headers=provider),
            lambda body: body["items"] or None,
        )
        assert told, "the shelter was told of the referral"


def _eventually_json(
    fetch: Callable[[], httpx.Response], pick: Callable[[dict[str, Any]], Any]
) -> Any:
    deadline = time.monotonic() + 20
    while True:
        answer = fetch()
        if answer.status_code == 200 and (found := pick(answer.json())) is not None:
            return found
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
