"""The notify service: in-app, e-mail, SMS and signed webhooks, in the recipient's language."""

from pathlib import Path

from fastapi import FastAPI

from nrm.app import Runtime, ServiceDefinition, create_service_app
from services.notify.handlers import HANDLERS
from services.notify.routes import router

SERVICE = ServiceDefinition(
    name="notify",
    title="notify",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    handlers=HANDLERS,
)


def create_app(runtime: Runtime) -> FastAPI:
    return create_service_app(SERVICE, runtime)
