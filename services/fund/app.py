"""The emergency fund: sources, budget lines, ledger, requests, approvals, payouts."""

from pathlib import Path

from fastapi import FastAPI

from nrm.app import Runtime, ServiceDefinition, create_service_app

SERVICE = ServiceDefinition(
    name="fund",
    title="fund",
    migrations=Path(__file__).parent / "migrations",
)


def create_app(runtime: Runtime) -> FastAPI:
    return create_service_app(SERVICE, runtime)
