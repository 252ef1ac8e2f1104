"""Tables of the notify database."""

from datetime import datetime

from sqlalchemy import DateTime
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class NotifyTable(SQLModel, registry=registry()):
    """Base of the notify tables: their own metadata, apart from other components'."""


class PingReceipt(NotifyTable, table=True):
    """A diagnostic ping that reached notify through the bus."""

    __tablename__ = "ping_receipts"

    ping_id: str = Field(primary_key=True, max_length=36)
    source_org: str = Field(max_length=100)
    sent_at: datetime = Field(sa_type=DateTime(timezone=True))
    received_at: datetime = Field(sa_type=DateTime(timezone=True))
