"""Intake's HTTP routes: parse, call the service, shape the answer."""

from typing import Annotated

from fastapi import APIRouter, Depends

from nrm.auth import Principal, require_roles
from nrm.db import SessionDep
from nrm.idempotency import IdempotencyDep
from services.intake import service
from services.intake.schemas import PingSent

router = APIRouter()
Admin = Annotated[Principal, Depends(require_roles("admin"))]


@router.post("/diagnostics/pings", status_code=202, tags=["diagnostics"])
async def send_ping(admin: Admin, session: SessionDep, idempotency: IdempotencyDep) -> PingSent:
    """Send a ping event through the outbox; notify records its arrival."""
    ping_id = service.send_ping(session, org_id=admin.org)
    return await idempotency.remember(session, PingSent(ping_id=ping_id), status_code=202)
