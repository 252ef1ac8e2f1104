from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI

from gateway.keys import SigningKeys, issue_access_token
from nrm.auth import CurrentPrincipal, Principal, TokenVerifier, require_roles
from nrm.errors import PROBLEM_JSON, install_problem_handlers
from tests.auth.conftest import AUDIENCE, ISSUER

Admin = Annotated[Principal, Depends(require_roles("admin", "auditor"))]


@pytest.fixture(scope="module")
def keys(provider_key: rsa.RSAPrivateKey) -> SigningKeys:
    return SigningKeys(provider_key)


@pytest.fixture
async def client(keys: SigningKeys) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"subject": principal.subject, "org": principal.org}

    @app.get("/admin")
    async def admin(principal: Admin) -> dict[str, str]:
        return {"subject": principal.subject}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nrm.test") as client:
        yield client


def bearer(keys: SigningKeys, *roles: str) -> dict[str, str]:
    token, _ = issue_access_token(
        keys, subject="user-1", org="org-1", roles=roles, issuer=ISSUER, audience=AUDIENCE
    )
    return {"Authorization": f"Bearer {token}"}


async def test_principal_is_available_to_a_route(
    client: httpx.AsyncClient, keys: SigningKeys
) -> None:
    response = await client.get("/me", headers=bearer(keys, "case_worker"))

    assert response.status_code == 200
    assert response.json() == {"subject": "user-1", "org": "org-1"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
    ],
    ids=["missing", "basic scheme", "empty bearer", "garbage bearer"],
)
async def test_request_without_a_valid_bearer_token_gets_401_problem(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/me", headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401


async def test_bearer_scheme_is_case_insensitive(
    client: httpx.AsyncClient, keys: SigningKeys
) -> None:
    token = bearer(keys)["Authorization"].removeprefix("Bearer ")

    response = await client.get("/me", headers={"Authorization": f"bearer {token}"})

    assert response.status_code == 200


async def test_principal_without_a_required_role_gets_403_problem(
    client: httpx.AsyncClient, keys: SigningKeys
) -> None:
    response = await client.get("/admin", headers=bearer(keys, "case_worker"))

    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"].endswith("/forbidden")


async def test_any_one_of_the_required_roles_is_enough(
    client: httpx.AsyncClient, keys: SigningKeys
) -> None:
    response = await client.get("/admin", headers=bearer(keys, "auditor"))

    assert response.status_code == 200


async def test_role_check_still_demands_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin")

    assert response.status_code == 401


def test_require_roles_needs_a_role() -> None:
    with pytest.raises(ValueError, match="at least one role"):
        require_roles()
