"""Notify's API bodies."""

from pydantic import BaseModel

from nrm.clock import UtcDatetime


class PingReceiptPublic(BaseModel):
    ping_id: str
    source_org: str
    sent_at: UtcDatetime
    received_at: UtcDatetime
