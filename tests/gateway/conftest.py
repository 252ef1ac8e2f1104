from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from gateway.app import create_app
from gateway.keys import SigningKeys
from gateway.upstream import Upstreams
from nrm.bus import InMemoryBus
from nrm.runner import migrate
from nrm.settings import Settings
from tests.infra import need
from tests.support import runtime_for

REDIS_HOST = os.environ.get("NRM_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("NRM_TEST_REDIS_PORT", "6379"))

GatewayFactory = Callable[[Settings, Mapping[str, httpx.AsyncClient]], FastAPI]


@pytest.fixture(scope="session")
def redis_url() -> str:
    need("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
async def gateway_factory(
    settings: Settings, signing_keys: SigningKeys
) -> AsyncIterator[GatewayFactory]:
    """Gateway apps as the runner builds them, on the test's settings with some changed."""
    await migrate(settings, ["gateway"])
    bus = InMemoryBus()
    await bus.connect()

    def build(custom: Settings, upstreams: Mapping[str, httpx.AsyncClient]) -> FastAPI:
        runtime = runtime_for(custom, bus, signing_keys)
        return create_app(runtime, keys=signing_keys, upstreams=Upstreams(upstreams))

    yield build
    await bus.close()


class CountingService:
    """An in-process stand-in for a service that counts what reaches it."""

    def __init__(self, name: str = "intake", headers: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.hits = 0
        app = FastAPI()

        @app.api_route(f"/api/v1/{name}/{{path:path}}", methods=["GET", "POST"])
        async def answer(path: str, request: Request) -> Response:
            self.hits += 1
            return Response('{"ok": true}', media_type="application/json", headers=headers)

        self.app = app

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url=f"http://{self.name}.internal")
