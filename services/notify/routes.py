"""Notify's HTTP routes."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from nrm.auth import Principal, require_roles
from nrm.db import SessionDep
from nrm.errors import NotFound
from services.notify.models import PingReceipt
from services.notify.schemas import PingReceiptPublic

router = APIRouter()
Admin = Annotated[Principal, Depends(require_roles("admin"))]


@router.get("/diagnostics/pings/{ping_id}", tags=["diagnostics"])
async def get_ping_receipt(ping_id: UUID, _: Admin, session: SessionDep) -> PingReceiptPublic:
    """Whether a ping sent from intake has arrived here, and when."""
    receipt = await session.get(PingReceipt, str(ping_id))
    if receipt is None:
        raise NotFound("No such ping has arrived.")
    return PingReceiptPublic.model_validate(receipt, from_attributes=True)
