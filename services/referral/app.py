"""The referral service: the directory of help, matching, referrals and their SLA."""

from pathlib import Path

from fastapi import FastAPI

from nrm.app import Runtime, ServiceDefinition, create_service_app
from services.referral.demo import load as load_demo
from services.referral.handlers import HANDLERS
from services.referral.routes import router
from services.referral.scheduler import escalation_scheduler

SERVICE = ServiceDefinition(
    name="referral",
    title="referral",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    handlers=HANDLERS,
    demo=load_demo,
    background=[escalation_scheduler],
)


def create_app(runtime: Runtime) -> FastAPI:
    return create_service_app(SERVICE, runtime)
