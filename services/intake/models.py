"""Tables of the intake database."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class IntakeTable(SQLModel, registry=registry()):
    """Base of the intake tables: their own metadata, apart from other components'."""
