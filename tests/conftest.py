from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.keys import SigningKeys
from nrm.settings import Settings
from tests.infra import (
    POSTGRES_HOST,
    POSTGRES_PORT,
    POSTGRES_USER,
    RABBIT_HOST,
    RABBIT_PORT,
    RUN_ID,
    need,
    rabbitmqctl,
)
from tests.support import PostgresDatabases

# Kept: how to reach the test servers, and whether they must be there.
OWN_SETTINGS = ("NRM_TEST_", "NRM_REQUIRE_REAL_INFRA")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Forget NRM_* settings exported in the shell that runs the tests: a developer's
    NRM_REDIS_URL or NRM_BROKER_URL would quietly move embedded tests onto real servers
    (shared rate-limit buckets, other queues). Each test says what it runs on."""
    for name in [n for n in os.environ if n.startswith("NRM_")]:
        if not name.startswith(OWN_SETTINGS):
            del os.environ[name]


@pytest.fixture(scope="session")
def rabbit_url() -> Iterator[str]:
    """An AMQP URL on a vhost of this test run's own, deleted afterwards."""
    need("RabbitMQ", RABBIT_HOST, RABBIT_PORT)
    vhost = f"nrm-test-{RUN_ID}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A URL to the server's `postgres` database, for creating per-run databases."""
    need("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    return f"postgresql+asyncpg://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/postgres"


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    return SigningKeys.load(Settings(data_dir=tmp_path_factory.mktemp("keys")))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded defaults in a directory of the test's own."""
    return Settings(data_dir=tmp_path, _env_file=None)


@pytest.fixture
async def postgres(postgres_admin_url: str) -> AsyncIterator[PostgresDatabases]:
    databases = PostgresDatabases(postgres_admin_url)
    try:
        yield databases
    finally:
        await databases.drop_all()


@pytest.fixture
def isolated_rabbit_url(rabbit_url: str) -> Iterator[str]:
    """A vhost of the test's own, for tests that run whole services with their real queues."""
    vhost = f"nrm-test-{RUN_ID}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield rabbit_url.rsplit("/", 1)[0] + f"/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """The process's tracer provider, recording spans in memory (it can be set only once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter
