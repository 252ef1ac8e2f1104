"""The intake service: cases, screening, triage, consent, protected personal data."""

from pathlib import Path

from fastapi import FastAPI

from nrm.app import Runtime, ServiceDefinition, create_service_app
from services.intake.routes import router

SERVICE = ServiceDefinition(
    name="intake",
    title="intake",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
)


def create_app(runtime: Runtime) -> FastAPI:
    return create_service_app(SERVICE, runtime)
