"""The composition root: builds the bus, keys, verifier and apps, and runs them.

`nrm up` runs all five components in one process; `nrm serve <component>` one of them.
Both build the apps the same way; only the bus and the gateway's upstreams differ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import uvloop
from fastapi import FastAPI

from gateway import app as gateway_app
from gateway import demo as gateway_demo
from gateway.keys import SigningKeys
from gateway.upstream import Upstreams
from nrm import asyncapi, migrations
from nrm.app import DemoLoader, Runtime, ServiceDefinition
from nrm.auth import JwksClient, KeySource, TokenVerifier
from nrm.bus import Bus, create_bus
from nrm.db import Database
from nrm.events import Event
from nrm.settings import COMPONENTS, SERVICES, Component, InsecureConfiguration, Settings
from nrm.telemetry import setup_logging, setup_tracing, shutdown_tracing

log = logging.getLogger("nrm")


def service_definitions() -> dict[Component, ServiceDefinition]:
    from services.fund.app import SERVICE as FUND
    from services.intake.app import SERVICE as INTAKE
    from services.notify.app import SERVICE as NOTIFY
    from services.referral.app import SERVICE as REFERRAL

    return {s.name: s for s in (INTAKE, REFERRAL, FUND, NOTIFY)}


def events_document() -> dict[str, Any]:
    """The AsyncAPI document of every event type, who publishes and who consumes it."""
    from gateway import events as gateway_events
    from services.fund import events as fund_events
    from services.intake import events as intake_events
    from services.referral import events as referral_events

    modules = (gateway_events, intake_events, referral_events, fund_events)
    events = asyncapi.catalogue(
        *(
            [v for v in vars(m).values() if isinstance(v, type) and issubclass(v, Event)]
            for m in modules
        )
    )
    consumers: dict[str, list[type[Event]]] = {
        name: list(d.handlers) for name, d in service_definitions().items()
    }
    return asyncapi.document(events, consumers, version=metadata.version("open-nrm"))


def service_factories() -> dict[Component, Callable[[Runtime], FastAPI]]:
    """Each service's own app factory: it may add what only it needs (intake's keys)."""
    from services.fund.app import create_app as fund
    from services.intake.app import create_app as intake
    from services.notify.app import create_app as notify
    from services.referral.app import create_app as referral

    return {"intake": intake, "referral": referral, "fund": fund, "notify": notify}


def migrations_dir(component: Component) -> Path:
    if component == "gateway":
        return gateway_app.MIGRATIONS
    return service_definitions()[component].migrations


async def migrate(settings: Settings, components: Iterable[Component]) -> None:
    for component in components:
        db = Database(settings.database_url(component))
        try:
            await migrations.upgrade(db, migrations_dir(component))
        finally:
            await db.dispose()
        log.info("migrated %s", component)


async def load_demo(settings: Settings, components: Iterable[Component] = COMPONENTS) -> list[str]:
    if settings.env == "prod":
        raise InsecureConfiguration("Demo data is for development only (NRM_ENV=prod).")
    loaders: list[tuple[Component, DemoLoader]] = [("gateway", gateway_demo.load)]
    loaders += [(d.name, d.demo) for d in service_definitions().values() if d.demo is not None]
    loaded: list[str] = []
    for component, load in loaders:
        if component not in components:
            continue
        db = Database(settings.database_url(component))
        try:
            async with db.transaction() as session:
                loaded += await load(session)
        finally:
            await db.dispose()
    return loaded


@asynccontextmanager
async def connected_bus(settings: Settings, connection_name: str) -> AsyncIterator[Bus]:
    bus = create_bus(
        settings.broker_url,
        delivery_limit=settings.delivery_limit,
        connection_name=connection_name,
    )
    await bus.connect()
    try:
        # Every consumer's queue, so events wait for a service that has not started yet.
        subscriptions = [s.subscription for s in service_definitions().values()]
        await bus.declare([s for s in subscriptions if s is not None])
        yield bus
    finally:
        await bus.close()


def build_verifier(
    settings: Settings, http: httpx.AsyncClient, keys: KeySource | None
) -> TokenVerifier:
    source: KeySource
    jwks_url = settings.jwks_url or (None if keys is not None else settings.effective_jwks_url())
    if jwks_url:
        source = JwksClient(jwks_url, http)
    elif keys is not None:
        source = keys
    else:
        raise InsecureConfiguration(
            "Set NRM_JWKS_URL or NRM_GATEWAY_URL: a service must know whose tokens to trust."
        )
    return TokenVerifier(
        source,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithms=settings.jwt_algorithms,
        roles_claim=settings.jwt_roles_claim,
        org_claim=settings.jwt_org_claim,
    )


async def _serve(app: FastAPI, host: str, port: int) -> None:
    # proxy_headers off: which X-Forwarded-For to believe is NRM_TRUSTED_PROXIES' call alone.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        lifespan="on",
        proxy_headers=False,
        server_header=False,  # no advertising of what runs here, to anyone probing
        # Each request starts from an empty context: after a body over 64 KiB, asyncio
        # otherwise hands the next request on the connection the previous one's span
        # (CPython #140947), and traces and log lines name the wrong request.
        reset_contextvars=True,
    )
    await uvicorn.Server(config).serve()


async def up(settings: Settings, *, host: str, port: int, demo: bool) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.check_production("gateway")
    await migrate(settings, COMPONENTS)
    loaded = await load_demo(settings) if demo else []
    provider = setup_tracing("open-nrm", settings)
    keys = SigningKeys.load(settings)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient())
        bus = await stack.enter_async_context(connected_bus(settings, "nrm-up"))
        runtime = Runtime(settings, bus, build_verifier(settings, http, keys), provider)
        clients: dict[str, httpx.AsyncClient] = {}
        for name, create_app in service_factories().items():
            app = create_app(runtime)
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients[name] = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                base_url=f"http://{name}.internal",
                timeout=upstream_timeout(settings),
            )
        # Consumers stop before the services' databases close.
        stack.push_async_callback(bus.close)
        gateway = gateway_app.create_app(
            runtime, keys=keys, upstreams=Upstreams(clients), events=events_document()
        )
        _announce(host, port, loaded)
        await _serve(gateway, host, port)
    shutdown_tracing(provider)


async def serve(settings: Settings, component: Component, *, host: str, port: int) -> None:
    settings.check_production(component)
    provider = setup_tracing(f"nrm-{component}", settings)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient())
        bus = await stack.enter_async_context(connected_bus(settings, f"nrm-{component}"))
        if component == "gateway":
            keys = SigningKeys.load(settings)
            runtime = Runtime(settings, bus, build_verifier(settings, http, keys), provider)
            app = gateway_app.create_app(
                runtime, keys=keys, upstreams=_http_upstreams(settings), events=events_document()
            )
        else:
            runtime = Runtime(settings, bus, build_verifier(settings, http, None), provider)
            app = service_factories()[component](runtime)
        await _serve(app, host, port)
    shutdown_tracing(provider)


def upstream_timeout(settings: Settings) -> httpx.Timeout:
    seconds = settings.upstream_timeout_seconds
    return httpx.Timeout(seconds, connect=min(5.0, seconds))


async def intake_maintenance(settings: Settings, command: str) -> int:
    from services.intake import accesslog, queries
    from services.intake.config import IntakeSettings
    from services.intake.crypto import load_keyring

    db = Database(settings.database_url("intake"))
    try:
        if command == "verify-log":
            async with db.transaction() as session:
                broken = await accesslog.verify(session)
            if broken is None:
                print("access log: every chain holds")
                return 0
            print(f"access log broken: case {broken.case_id}, entry {broken.seq}: {broken.problem}")
            return 1
        intake = IntakeSettings()
        keyring = load_keyring(settings, intake.master_keys, intake.index_key)
        total = 0
        while True:
            async with db.transaction() as session:
                moved = await queries.rewrap(session, keyring)
            total += moved
            if not moved:
                break
        print(f"re-wrapped {total} case keys under {keyring.current_kid}")
        return 0
    finally:
        await db.dispose()


def _http_upstreams(settings: Settings) -> Upstreams:
    urls: dict[str, str] = {n: url for n in SERVICES if (url := settings.service_url(n))}
    return Upstreams.over_http(urls, timeout=settings.upstream_timeout_seconds)


def _announce(host: str, port: int, loaded: list[str]) -> None:
    base = f"http://{host}:{port}"
    lines = [
        "",
        "Open NRM is running (embedded: one process, SQLite, in-memory bus).",
        f"  API docs  {base}/docs",
        f"  health    {base}/readyz and {base}/api/v1/<service>/readyz",
    ]
    if loaded:
        lines += ["  demo data loaded:", *(f"    {item}" for item in loaded)]
    print("\n".join(lines), flush=True)


def run_server(server: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived server on uvloop: its event loop costs a fraction of asyncio's."""
    uvloop.run(server)


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    setup_logging(settings.log_level)
    try:
        match args.command:
            case "up":
                run_server(up(settings, host=args.host, port=args.port, demo=args.demo))
            case "serve":
                run_server(serve(settings, args.component, host=args.host, port=args.port))
            case "migrate":
                chosen = COMPONENTS if args.component == "all" else (args.component,)
                asyncio.run(migrate(settings, chosen))
            case "intake":
                return asyncio.run(intake_maintenance(settings, args.intake_command))
            case "asyncapi":
                print(json.dumps(events_document(), indent=2))
            case "demo":
                asyncio.run(migrate(settings, COMPONENTS))
                for item in asyncio.run(load_demo(settings)):
                    print(item)
    except InsecureConfiguration as exc:
        print(f"nrm: refusing to start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
