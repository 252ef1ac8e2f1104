"""Tokens for people and partner systems, and the admin API that manages them."""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from jose import jwt
from sqlmodel import func, select

from gateway import demo
from gateway.app import create_app
from gateway.keys import SigningKeys
from gateway.models import User
from gateway.throttle import ThrottlePolicy
from gateway.upstream import Upstreams
from nrm.bus import InMemoryBus
from nrm.db import Database
from nrm.runner import load_demo, migrate
from nrm.settings import Settings
from tests.support import runtime_for, serving

TOKEN = "/auth/token"


@pytest.fixture(scope="module")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated and loaded once (Argon2 is slow on purpose); each test gets a copy."""
    data_dir = tmp_path_factory.mktemp("gateway-demo")
    settings = Settings(data_dir=data_dir)

    async def prepare() -> None:
        await migrate(settings, ["gateway"])
        await load_demo(settings, ["gateway"])

    asyncio.run(prepare())
    SigningKeys.load(settings)
    return data_dir


@pytest.fixture
async def gateway(tmp_path: Path, demo_data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    data_dir = tmp_path / "var"
    shutil.copytree(demo_data_dir, data_dir)
    settings = Settings(data_dir=data_dir)
    keys = SigningKeys.load(settings)
    bus = InMemoryBus()
    await bus.connect()
    app = create_app(runtime_for(settings, bus, keys), keys=keys, upstreams=Upstreams({}))
    async with serving(app) as client:
        # The slowing-down itself is checked on ThrottlePolicy; here it would only cost time.
        app.state.throttle.policy = ThrottlePolicy(max_delay=0.0)
        yield client
    await bus.close()


async def _password_token(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post(
        TOKEN, data={"grant_type": "password", "username": username, "password": password}
    )


async def _bearer(http: httpx.AsyncClient, username: str = "admin") -> dict[str, str]:
    answer = await _password_token(http, username, demo.DEMO_PASSWORD)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.get_unverified_claims(token)
    return claims


async def test_password_grant_issues_a_standard_rs256_token(gateway: httpx.AsyncClient) -> None:
    answer = await _password_token(gateway, "intake.police", demo.DEMO_PASSWORD)

    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    jwks = (await gateway.get("/.well-known/jwks.json")).json()
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}
    claims = _claims(body["access_token"])
    assert claims["org"] == "police-dushanbe"
    assert claims["roles"] == ["intake_officer"]
    assert claims["exp"] == claims["iat"] + 900  # type: ignore[operator]
    assert {"iss", "aud", "sub", "nbf", "jti", "scope"} <= claims.keys()
    assert claims["sub"] != "intake.police", "the subject is an id, not a name"


@pytest.mark.parametrize("how", ["form", "basic"])
async def test_client_credentials_grant_for_a_partner_system(
    gateway: httpx.AsyncClient, how: str
) -> None:
    form = {"grant_type": "client_credentials"}
    headers = {}
    if how == "form":
        form |= {"client_id": demo.CLIENT_ID, "client_secret": demo.DEMO_CLIENT_SECRET}
    else:
        raw = f"{demo.CLIENT_ID}:{demo.DEMO_CLIENT_SECRET}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()

    answer = await gateway.post(TOKEN, data=form, headers=headers)

    assert answer.status_code == 200, answer.text
    claims = _claims(answer.json()["access_token"])
    assert claims["sub"] == demo.CLIENT_ID
    assert claims["org"] == "shelter-khujand"
    assert claims["roles"] == ["provider", "system"]
    assert claims["scope"] == "referrals:read referrals:write"


async def test_a_client_may_narrow_but_not_widen_its_scopes(gateway: httpx.AsyncClient) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": demo.CLIENT_ID,
        "client_secret": demo.DEMO_CLIENT_SECRET,
    }
    narrowed = await gateway.post(TOKEN, data=form | {"scope": "referrals:read"})
    widened = await gateway.post(TOKEN, data=form | {"scope": "fund:approve"})
    assert _claims(narrowed.json()["access_token"])["scope"] == "referrals:read"
    assert widened.status_code == 400
    assert widened.json()["error"] == "invalid_scope"


async def test_unknown_user_and_wrong_password_get_the_same_answer(
    gateway: httpx.AsyncClient,
) -> None:
    unknown = await _password_token(gateway, "nobody.here", demo.DEMO_PASSWORD)
    wrong = await _password_token(gateway, "intake.ngo", "not-the-password")

    assert unknown.status_code == wrong.status_code == 401
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json() == wrong.json()


async def test_unsupported_grant_is_400(gateway: httpx.AsyncClient) -> None:
    answer = await gateway.post(TOKEN, data={"grant_type": "implicit"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"


async def test_repeated_failures_lock_the_username_for_a_while(
    gateway: httpx.AsyncClient,
) -> None:
    for _ in range(10):
        await _password_token(gateway, "provider.legal", "guess-guess-guess")

    locked = await _password_token(gateway, "provider.legal", demo.DEMO_PASSWORD)

    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 60
    assert locked.headers["content-type"] == "application/problem+json"


async def test_admin_creates_a_user_who_can_sign_in_until_deactivated(
    gateway: httpx.AsyncClient,
) -> None:
    admin = await _bearer(gateway)
    created = await gateway.post(
        "/api/v1/gateway/users",
        headers=admin,
        json={
            "username": "officer.border",
            "password": "correct horse battery",
            "org_id": "police-dushanbe",
            "roles": ["intake_officer"],
            "language": "tg",
        },
    )
    assert created.status_code == 201, created.text
    assert "password" not in created.text
    assert (await _password_token(gateway, "officer.border", "correct horse battery")).is_success

    user_id = created.json()["id"]
    deactivated = await gateway.post(f"/api/v1/gateway/users/{user_id}/deactivate", headers=admin)
    assert deactivated.json()["active"] is False
    refused = await _password_token(gateway, "officer.border", "correct horse battery")
    assert refused.status_code == 401


async def test_user_with_an_unknown_role_or_organisation_is_refused(
    gateway: httpx.AsyncClient,
) -> None:
    admin = await _bearer(gateway)
    base = {"username": "x.y", "password": "a long enough one", "language": "ru"}
    bad_role = await gateway.post(
        "/api/v1/gateway/users",
        headers=admin,
        json=base | {"org_id": "police-dushanbe", "roles": ["superuser"]},
    )
    bad_org = await gateway.post(
        "/api/v1/gateway/users",
        headers=admin,
        json=base | {"org_id": "no-such-org", "roles": ["provider"]},
    )
    assert bad_role.status_code == bad_org.status_code == 422


async def test_client_secret_is_shown_once_and_rotation_retires_the_old_one(
    gateway: httpx.AsyncClient,
) -> None:
    admin = await _bearer(gateway)
    created = await gateway.post(
        "/api/v1/gateway/clients",
        headers=admin,
        json={"client_id": "hotline-crm", "org_id": "ngo-migrant-support", "roles": ["system"]},
    )
    assert created.status_code == 201, created.text
    first_secret = created.json()["client_secret"]
    listed = await gateway.get("/api/v1/gateway/clients", headers=admin)
    assert first_secret not in listed.text
    assert "client_secret" not in listed.text

    rotated = await gateway.post("/api/v1/gateway/clients/hotline-crm/secret", headers=admin)
    second_secret = rotated.json()["client_secret"]
    form = {"grant_type": "client_credentials", "client_id": "hotline-crm"}
    old = await gateway.post(TOKEN, data=form | {"client_secret": first_secret})
    new = await gateway.post(TOKEN, data=form | {"client_secret": second_secret})
    assert old.status_code == 401
    assert new.status_code == 200

    await gateway.post("/api/v1/gateway/clients/hotline-crm/deactivate", headers=admin)
    gone = await gateway.post(TOKEN, data=form | {"client_secret": second_secret})
    assert gone.status_code == 401


async def test_key_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(
    gateway: httpx.AsyncClient,
) -> None:
    admin = await _bearer(gateway)
    old_kid = jwt.get_unverified_header(admin["Authorization"].split()[1])["kid"]

    rotated = await gateway.post("/api/v1/gateway/keys/rotate", headers=admin)
    assert rotated.status_code == 200
    new_kid = rotated.json()["kid"]

    kids = {key["kid"] for key in (await gateway.get("/.well-known/jwks.json")).json()["keys"]}
    assert {old_kid, new_kid} <= kids
    assert (await gateway.get("/api/v1/gateway/users", headers=admin)).status_code == 200
    fresh = await _bearer(gateway)
    assert jwt.get_unverified_header(fresh["Authorization"].split()[1])["kid"] == new_kid


async def test_admin_api_needs_an_admin(gateway: httpx.AsyncClient) -> None:
    anonymous = await gateway.get("/api/v1/gateway/users")
    provider = await gateway.get(
        "/api/v1/gateway/users", headers=await _bearer(gateway, "provider.khujand")
    )
    assert anonymous.status_code == 401
    assert provider.status_code == 403


async def test_lists_page_with_a_cursor(gateway: httpx.AsyncClient) -> None:
    admin = await _bearer(gateway)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "4"} | ({"cursor": cursor} if cursor else {})
        page = (await gateway.get("/api/v1/gateway/users", headers=admin, params=params)).json()
        seen += [user["username"] for user in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(demo.USERS)


async def test_demo_data_loads_idempotently(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    await migrate(settings, ["gateway"])
    await load_demo(settings, ["gateway"])
    await load_demo(settings, ["gateway"])
    db = Database(settings.database_url("gateway"))
    async with db.transaction() as session:
        users = (await session.exec(select(func.count()).select_from(User))).one()
    await db.dispose()
    assert users == len(demo.USERS)


def test_failures_beyond_the_threshold_are_slowed_more_and_more_up_to_a_cap() -> None:
    policy = ThrottlePolicy(slow_after=5, max_delay=4.0)
    delays = [policy.delay(failures) for failures in range(1, 12)]
    assert delays[:5] == [0.0] * 5
    assert delays[5:8] == [0.5, 1.0, 2.0]
    assert max(delays) == 4.0


async def test_the_admin_role_is_only_for_the_platform_operator(gateway: httpx.AsyncClient) -> None:
    admin = await _bearer(gateway)
    ngo_admin = await gateway.post(
        "/api/v1/gateway/users",
        headers=admin,
        json={
            "username": "ngo.admin",
            "password": "a long enough one",
            "org_id": "ngo-migrant-support",
            "roles": ["admin"],
        },
    )
    operator_admin = await gateway.post(
        "/api/v1/gateway/users",
        headers=admin,
        json={
            "username": "second.admin",
            "password": "a long enough one",
            "org_id": "nrm-operator",
            "roles": ["admin"],
        },
    )
    assert ngo_admin.status_code == 422
    assert operator_admin.status_code == 201
