"""What every service app is made of, so a reader who knows one knows all four.

A service supplies its name, routers, event handlers and migrations; this builds the
FastAPI app whose lifespan opens the database, starts the outbox relay and the
consumer, and closes them again. Engines and connections are made in the lifespan,
never at import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace import TracerProvider
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.middleware import Middleware

from nrm.auth import TokenVerifier
from nrm.bus.base import Bus, Subscription
from nrm.db import Database
from nrm.errors import install_problem_handlers
from nrm.events import Event
from nrm.health import health_router
from nrm.idempotency import ReplayedResponse
from nrm.inbox import EventConsumer, EventHandler, subscription_of
from nrm.outbox import OutboxRelay
from nrm.retention import RetentionPolicy, RetentionSweeper
from nrm.settings import Component, Settings
from nrm.telemetry import instrument_app, instrument_engine

DemoLoader = Callable[[AsyncSession], Awaitable[list[str]]]


@dataclass(frozen=True)
class Runtime:
    """What the composition root shares with every app of the process."""

    settings: Settings
    bus: Bus
    verifier: TokenVerifier
    tracer_provider: TracerProvider | None = None


@dataclass(frozen=True)
class ServiceDefinition:
    name: Component
    title: str
    migrations: Path
    routers: Sequence[APIRouter] = ()
    handlers: Mapping[type[Event], EventHandler] = field(default_factory=dict)
    demo: DemoLoader | None = None
    # Long-running work beside the requests (schedulers, delivery workers): each is entered
    # after the database, relay and consumer are up, and left before they close.
    background: Sequence[Callable[[FastAPI], AbstractAsyncContextManager[None]]] = ()

    @property
    def prefix(self) -> str:
        return f"/api/v1/{self.name}"

    @property
    def subscription(self) -> Subscription | None:
        return subscription_of(self.name, self.handlers) if self.handlers else None


def base_app(
    title: str,
    *,
    lifespan: Callable[[FastAPI], AsyncIterator[None]] | None,
    prefix: str = "",
    innermost: Sequence[Middleware] = (),
) -> FastAPI:
    """A FastAPI app answering every error as problem+json.

    `innermost` middleware runs inside every other layer, next to the routes.
    """
    app = FastAPI(
        title=title,
        lifespan=asynccontextmanager(lifespan) if lifespan else None,
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
        # FastAPI's own OpenTelemetry support stays off: the request span and log line are
        # nrm.telemetry's, and FastAPI's keeps request bodies and validation input (which
        # here is personal data) for span processors.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_problem_handlers(app)
    for middleware in reversed(innermost):
        app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)

    async def replay(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ReplayedResponse)
        return exc.response()

    app.add_exception_handler(ReplayedResponse, replay)
    return app


@asynccontextmanager
async def bookkeeping(db: Database, runtime: Runtime) -> AsyncIterator[None]:
    """What every component runs beside its requests: the outbox relay, and the sweeper
    that deletes bookkeeping rows past their time (see retention.py)."""
    upkeep = db.for_upkeep()
    instrument_engine(upkeep.engine, runtime.tracer_provider)
    relay = OutboxRelay(upkeep, runtime.bus)
    db.session_info[OutboxRelay.WAKE] = relay.wake  # requests' commits wake it
    relay.start()
    sweeper = RetentionSweeper(upkeep, RetentionPolicy.from_settings(runtime.settings))
    sweeper.start()
    try:
        yield
    finally:
        await sweeper.stop()
        await relay.stop()
        await upkeep.dispose()


def create_service_app(service: ServiceDefinition, runtime: Runtime) -> FastAPI:
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(runtime.settings.database_url(service.name))
        instrument_engine(db.engine, runtime.tracer_provider)
        app.state.db = db
        app.state.bus = runtime.bus
        app.state.verifier = runtime.verifier
        app.state.settings = runtime.settings
        try:
            async with bookkeeping(db, runtime), AsyncExitStack() as workers:
                if service.handlers:
                    consumer = EventConsumer(service.name, db, service.handlers)
                    await runtime.bus.consume(consumer.subscription, consumer)
                for worker in service.background:
                    await workers.enter_async_context(worker(app))
                yield
        finally:
            await db.dispose()

    app = base_app(f"Open NRM {service.title}", lifespan=lifespan, prefix=service.prefix)
    app.include_router(health_router())
    app.include_router(health_router(), prefix=service.prefix, include_in_schema=False)
    for router in service.routers:
        app.include_router(router, prefix=service.prefix)
    instrument_app(app, runtime.tracer_provider, prefix=service.prefix)
    return app
