"""The notify service: in-app, e-mail, SMS and signed webhooks, in the recipient's language."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from nrm.app import Runtime, ServiceDefinition, create_service_app
from nrm.db import Database
from nrm.settings import Settings
from services.notify import routes, webhook_routes
from services.notify.channels.webhook import http_client
from services.notify.config import load_config, secret_key
from services.notify.delivery import Channels, DeliveryWorker
from services.notify.fanout import WAKE_DELIVERIES
from services.notify.handlers import HANDLERS
from services.notify.outbound import Allowlist


@asynccontextmanager
async def delivery_worker(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    db: Database = app.state.db
    config = load_config(settings)
    async with http_client(config.webhook_timeout_seconds, config.delivery_concurrency) as http:
        channels = Channels(
            config=config,
            secret_key=secret_key(config, settings),
            allowlist=Allowlist.parse(settings.notify_webhook_allowlist),
            require_https=settings.env == "prod",
            mail_dir=settings.data_dir / "mail",
            http=http,
        )
        worker = DeliveryWorker(db, channels)
        app.state.notify_channels = channels
        db.session_info[WAKE_DELIVERIES] = worker.wake
        worker.start()
        try:
            yield
        finally:
            db.session_info.pop(WAKE_DELIVERIES, None)
            await worker.stop()


SERVICE = ServiceDefinition(
    name="notify",
    title="notify",
    migrations=Path(__file__).parent / "migrations",
    routers=[routes.router, webhook_routes.router],
    handlers=HANDLERS,
    background=[delivery_worker],
)


def create_app(runtime: Runtime) -> FastAPI:
    return create_service_app(SERVICE, runtime)
