"""The emergency fund: sources, budget lines, ledger, requests, approvals, payouts."""

from pathlib import Path

from fastapi import FastAPI

from nrm.app import Runtime, ServiceDefinition, create_service_app
from services.fund.demo import load
from services.fund.handlers import HANDLERS
from services.fund.routes import router
from services.fund.worker import payout_worker

SERVICE = ServiceDefinition(
    name="fund",
    title="fund",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    handlers=HANDLERS,
    demo=load,
    background=[payout_worker],
)


def create_app(runtime: Runtime) -> FastAPI:
    return create_service_app(SERVICE, runtime)
