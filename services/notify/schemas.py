"""Notify's API bodies."""

from datetime import datetime

from pydantic import BaseModel


class PingReceiptPublic(BaseModel):
    ping_id: str
    source_org: str
    sent_at: datetime
    received_at: datetime
