"""What notify's routes ask for: callers by role, and the channels made in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from nrm.auth import Principal, require_roles
from services.notify.delivery import Channels
from services.notify.subscriptions import MANAGERS


async def _channels(request: Request) -> Channels:
    channels: Channels = request.app.state.notify_channels
    return channels


ChannelsDep = Annotated[Channels, Depends(_channels)]
Admin = Annotated[Principal, Depends(require_roles("admin"))]
Manager = Annotated[Principal, Depends(require_roles(*MANAGERS))]
