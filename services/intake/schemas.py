"""Intake's API bodies."""

from uuid import UUID

from pydantic import BaseModel


class PingSent(BaseModel):
    ping_id: UUID
