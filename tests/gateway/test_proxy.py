"""The gateway's proxy against a real HTTP server standing in for a service."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from gateway.app import create_app
from gateway.keys import SigningKeys, issue_access_token
from gateway.upstream import Upstreams
from nrm.app import Runtime
from nrm.auth import Principal, TokenVerifier
from nrm.bus import InMemoryBus
from nrm.runner import migrate
from nrm.settings import Settings
from tests.support import bearer, runtime_for, serving


def _echo_app() -> FastAPI:
    app = FastAPI()

    @app.api_route("/api/v1/intake/{path:path}", methods=["GET", "POST"])
    async def echo(path: str, request: Request, response: Response) -> dict[str, Any]:
        if path == "slow":
            await asyncio.sleep(2)
        if path == "sign-in":
            response.set_cookie("session", "for-the-first-caller-only")
        body = await request.body()
        return {
            "path": request.url.path,
            "query": request.url.query,
            "headers": dict(request.headers),
            "body_length": len(body),
        }

    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(_echo_app(), port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "upstream did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.fixture
async def gateway(
    settings: Settings, signing_keys: SigningKeys, upstream_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    await migrate(settings, ["gateway"])
    bus = InMemoryBus()
    await bus.connect()
    upstreams = Upstreams(
        {
            "intake": httpx.AsyncClient(base_url=upstream_url, timeout=httpx.Timeout(0.5)),
            "fund": httpx.AsyncClient(base_url=f"http://127.0.0.1:{_free_port()}"),
        }
    )
    app = create_app(
        runtime_for(settings, bus, signing_keys), keys=signing_keys, upstreams=upstreams
    )
    async with serving(app) as client:
        yield client
    await bus.close()


async def test_request_reaches_the_service_with_path_query_body_and_token(
    gateway: httpx.AsyncClient, settings: Settings, signing_keys: SigningKeys
) -> None:
    token = bearer(signing_keys, settings)["Authorization"]
    answer = await gateway.post(
        "/api/v1/intake/cases?limit=5",
        content=b"x" * 100_000,
        headers={
            "Authorization": token,
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "for the next hop only",
        },
    )
    assert answer.status_code == 200
    echoed = answer.json()
    assert echoed["path"] == "/api/v1/intake/cases"
    assert echoed["query"] == "limit=5"
    assert echoed["body_length"] == 100_000
    assert echoed["headers"]["authorization"] == token
    assert "x-secret-hop" not in echoed["headers"], "headers named in Connection are hop-by-hop"
    assert echoed["headers"]["x-forwarded-proto"] == "http"
    assert echoed["headers"]["x-forwarded-for"]
    assert echoed["headers"]["x-request-id"] == answer.headers["x-request-id"]


async def test_a_callers_request_id_is_kept(gateway: httpx.AsyncClient) -> None:
    answer = await gateway.get("/api/v1/intake/x", headers={"X-Request-ID": "req-42"})
    assert answer.json()["headers"]["x-request-id"] == "req-42"
    assert answer.headers["x-request-id"] == "req-42"


async def test_forged_forwarding_headers_are_replaced(gateway: httpx.AsyncClient) -> None:
    answer = await gateway.get("/api/v1/intake/x", headers={"X-Forwarded-For": "10.9.9.9"})
    assert answer.json()["headers"]["x-forwarded-for"] != "10.9.9.9"


async def test_unknown_service_is_404(gateway: httpx.AsyncClient) -> None:
    answer = await gateway.get("/api/v1/payroll/anything")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


async def test_service_down_is_502_problem(gateway: httpx.AsyncClient) -> None:
    answer = await gateway.get("/api/v1/fund/requests")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"


async def test_service_too_slow_is_504_not_a_hang(gateway: httpx.AsyncClient) -> None:
    # The stand-in answers 200 after 2 s; the gateway's client gives up after 0.5 s.
    answer = await gateway.get("/api/v1/intake/slow")
    assert answer.status_code == 504
    assert answer.headers["content-type"] == "application/problem+json"


async def test_a_bad_token_is_refused_at_the_gateway(gateway: httpx.AsyncClient) -> None:
    answer = await gateway.get("/api/v1/intake/x", headers={"Authorization": "Bearer t0ken"})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


async def test_a_token_is_verified_once_per_request_at_the_gateway(
    settings: Settings, signing_keys: SigningKeys, upstream_url: str
) -> None:
    calls = 0

    class CountingVerifier(TokenVerifier):
        async def verify(self, token: str) -> Principal:
            nonlocal calls
            calls += 1
            return await super().verify(token)

    await migrate(settings, ["gateway"])
    bus = InMemoryBus()
    await bus.connect()
    verifier = CountingVerifier(
        signing_keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    upstreams = Upstreams({"intake": httpx.AsyncClient(base_url=upstream_url)})
    runtime = Runtime(settings, bus, verifier)
    app = create_app(runtime, keys=signing_keys, upstreams=upstreams)
    async with serving(app) as client:
        answer = await client.get("/api/v1/intake/x", headers=bearer(signing_keys, settings))
    await bus.close()

    assert answer.status_code == 200
    assert calls == 1, "the rate limiter and the proxy share one verification"


async def test_a_cookie_a_service_sets_is_not_kept_for_the_next_caller(
    gateway: httpx.AsyncClient,
) -> None:
    # One upstream client serves every caller: a cookie jar in it would hand the first
    # caller's cookie to everyone after.
    first = await gateway.get("/api/v1/intake/sign-in")
    assert "session=" in first.headers.get("set-cookie", ""), "passed back to its caller"
    gateway.cookies.clear()

    after = await gateway.get("/api/v1/intake/anything")

    assert "cookie" not in after.json()["headers"]


def machine(keys: SigningKeys, settings: Settings, *scopes: str) -> dict[str, str]:
    token, _ = issue_access_token(
        keys,
        subject="ngo-system",
        org="shelter-khujand",
        roles=["system", "provider"],
        scopes=scopes,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return {"Authorization": f"Bearer {token}"}


async def test_a_machine_client_reaches_only_what_its_scopes_name(
    gateway: httpx.AsyncClient, settings: Settings, signing_keys: SigningKeys
) -> None:
    reader = machine(signing_keys, settings, "cases:read")

    assert (await gateway.get("/api/v1/intake/cases", headers=reader)).status_code == 200
    written = await gateway.post("/api/v1/intake/cases", headers=reader, json={})
    assert written.status_code == 403
    assert written.headers["content-type"] == "application/problem+json"
    assert written.json()["scope"] == "cases:write"
    assert 'error="insufficient_scope"' in written.headers["www-authenticate"]
    elsewhere = await gateway.get("/api/v1/intake/notes", headers=reader)
    assert elsewhere.status_code == 403, "another collection of the same service"
    none = machine(signing_keys, settings)
    assert (await gateway.get("/api/v1/intake/cases", headers=none)).status_code == 403
    assert (await gateway.get("/api/v1/intake/readyz", headers=none)).status_code == 200


async def test_a_persons_token_is_not_narrowed_by_scopes(
    gateway: httpx.AsyncClient, settings: Settings, signing_keys: SigningKeys
) -> None:
    person = bearer(signing_keys, settings, roles=["intake_officer"])

    assert (await gateway.post("/api/v1/intake/cases", headers=person, json={})).status_code == 200
