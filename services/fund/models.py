"""Tables of the fund database."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class FundTable(SQLModel, registry=registry()):
    """Base of the fund tables: their own metadata, apart from other components'."""
