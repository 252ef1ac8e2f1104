"""Tables of the gateway database: who may sign in, for which organisation, with which roles."""

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Integer, String
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from nrm.clock import utcnow


class GatewayTable(SQLModel, registry=registry()):
    """Base of the gateway tables: their own metadata, apart from other components'."""


class Organization(GatewayTable, table=True):
    """An organisation as the gateway knows it: the tenant every token names."""

    __tablename__ = "organizations"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(sa_type=String(200))
    # The fund's commission needs to know who speaks for the state and who for civil society.
    sector: str = Field(sa_type=String(32))
    active: bool = Field(default=True, sa_type=Boolean)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class User(GatewayTable, table=True):
    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=36)
    username: str = Field(sa_type=String(100), unique=True, index=True)
    password_hash: str = Field(sa_type=String(200))
    org_id: str = Field(foreign_key="organizations.id", max_length=64, index=True)
    roles: list[str] = Field(sa_type=JSON)
    language: str = Field(default="ru", sa_type=String(8))
    active: bool = Field(default=True, sa_type=Boolean)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ApiClient(GatewayTable, table=True):
    """A partner system signing in with client credentials."""

    __tablename__ = "api_clients"

    client_id: str = Field(primary_key=True, max_length=100)
    secret_hash: str = Field(sa_type=String(200))
    org_id: str = Field(foreign_key="organizations.id", max_length=64, index=True)
    roles: list[str] = Field(sa_type=JSON)
    scopes: list[str] = Field(sa_type=JSON)
    active: bool = Field(default=True, sa_type=Boolean)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    secret_rotated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class SignInFailures(GatewayTable, table=True):
    """Recent failed sign-ins per username, client or IP: slowed, then locked."""

    __tablename__ = "sign_in_failures"

    key: str = Field(primary_key=True, max_length=200)
    failures: int = Field(default=0, sa_type=Integer)
    window_started_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    locked_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
