"""Building apps, tokens and databases for tests the same way the runner does."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from gateway.keys import SigningKeys, issue_access_token
from nrm import migrations
from nrm.app import Runtime
from nrm.auth import TokenVerifier
from nrm.bus.base import Bus
from nrm.db import Database
from nrm.runner import migrations_dir
from nrm.settings import Component, Settings
from tests.infra import RUN_ID

T = TypeVar("T")


def verifier_for(keys: SigningKeys, settings: Settings) -> TokenVerifier:
    return TokenVerifier(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience)


def runtime_for(settings: Settings, bus: Bus, keys: SigningKeys) -> Runtime:
    return Runtime(settings, bus, verifier_for(keys, settings))


def bearer(
    keys: SigningKeys,
    settings: Settings,
    *,
    roles: Iterable[str] = ("admin",),
    org: str = "org-operator",
    subject: str = "user-1",
) -> dict[str, str]:
    token, _ = issue_access_token(
        keys,
        subject=subject,
        org=org,
        roles=roles,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def serving(app: FastAPI, base_url: str = "http://test") -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it in-process."""
    async with app.router.lifespan_context(app):
        # Like a real server: an unhandled error is a 500 answer, not an exception here.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0, interval: float = 0.05
) -> T:
    """Poll until `probe` returns something other than None, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


class PostgresDatabases:
    """Creates databases named after this test run, and drops them afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    async def create(self, label: str) -> str:
        name = f"nrm_test_{RUN_ID}_{len(self.created)}_{label}"
        await self._execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    async def drop_all(self) -> None:
        for name in self.created:
            await self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def _execute(self, statement: str) -> None:
        dsn = self.admin_url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()


async def migrated_database(url: str, component: Component) -> Database:
    db = Database(url)
    await migrations.upgrade(db, migrations_dir(component))
    return db


# For a fixture that runs its tests on both databases:
# @pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
SQLITE_AND_POSTGRES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@asynccontextmanager
async def database_of(
    request: pytest.FixtureRequest, settings: Settings, component: Component
) -> AsyncIterator[Database]:
    """The component's migrated database, on SQLite or PostgreSQL as `request.param` says."""
    postgres = None
    url = settings.database_url(component)
    if request.param == "postgres":
        postgres = PostgresDatabases(request.getfixturevalue("postgres_admin_url"))
        url = await postgres.create(component)
    database = await migrated_database(url, component)
    try:
        yield database
    finally:
        await database.dispose()
        if postgres is not None:
            await postgres.drop_all()


def json_refs(node: Any) -> Iterator[str]:
    """Every `$ref` in a JSON document (OpenAPI, AsyncAPI)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from json_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from json_refs(item)


def resolve_ref(document: dict[str, Any], ref: str) -> Any:
    """What a local `#/...` JSON pointer names in `document`."""
    assert ref.startswith("#/"), ref
    node: Any = document
    for token in ref[2:].split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


class LocalHttpServer:
    """A real HTTP server on 127.0.0.1, in a thread, standing in for an outside system
    (an identity provider's JWKS, an OpenTelemetry collector). Use it as a context."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        # A short poll interval makes shutdown() quick: it is waited for after every test.
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that answers in one call and writes no access log."""

    def answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
