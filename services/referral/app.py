"""The referral service: the directory of help, matching, referrals and their SLA."""

from pathlib import Path

from fastapi import FastAPI

from nrm.app import Runtime, ServiceDefinition, create_service_app

SERVICE = ServiceDefinition(
    name="referral",
    title="referral",
    migrations=Path(__file__).parent / "migrations",
)


def create_app(runtime: Runtime) -> FastAPI:
    return create_service_app(SERVICE, runtime)
