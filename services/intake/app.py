"""The intake service: cases, screening, triage, consent, protected personal data."""

from pathlib import Path

from fastapi import FastAPI

from nrm.app import Runtime, ServiceDefinition, create_service_app
from services.intake.config import IntakeSettings
from services.intake.crypto import load_keyring
from services.intake.handlers import HANDLERS
from services.intake.routes import router

SERVICE = ServiceDefinition(
    name="intake",
    title="intake",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    handlers=HANDLERS,
)


def create_app(runtime: Runtime) -> FastAPI:
    intake_settings = IntakeSettings()
    # Loaded here, not in the lifespan: production without keys refuses to start at once.
    keyring = load_keyring(runtime.settings, intake_settings.master_keys, intake_settings.index_key)
    app = create_service_app(SERVICE, runtime)
    app.state.keyring = keyring
    return app
