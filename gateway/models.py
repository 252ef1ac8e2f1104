"""Tables of the gateway database."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class GatewayTable(SQLModel, registry=registry()):
    """Base of the gateway tables: their own metadata, apart from other components'."""
