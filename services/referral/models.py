"""Tables of the referral database."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class ReferralTable(SQLModel, registry=registry()):
    """Base of the referral tables: their own metadata, apart from other components'."""
