"""The gateway's API bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nrm.clock import UtcDatetime

Language = Literal["tg", "ru", "en"]
Sector = Literal["state", "civil_society", "international", "operator"]
Slug = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9.-]*$")


class OrganizationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Slug
    name: str = Field(min_length=2, max_length=200)
    sector: Sector


class OrganizationPublic(BaseModel):
    id: str
    name: str
    sector: str
    active: bool


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    password: str = Field(min_length=12, max_length=200)
    org_id: str = Slug
    roles: list[str] = Field(min_length=1, max_length=8)
    language: Language = "ru"


class UserPublic(BaseModel):
    id: str
    username: str
    org_id: str
    roles: list[str]
    language: str
    active: bool
    created_at: UtcDatetime


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=3, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    org_id: str = Slug
    roles: list[str] = Field(min_length=1, max_length=8)
    scopes: list[str] = Field(default_factory=list, max_length=32)


class ClientPublic(BaseModel):
    client_id: str
    org_id: str
    roles: list[str]
    scopes: list[str]
    active: bool
    created_at: UtcDatetime
    secret_rotated_at: UtcDatetime


class ClientWithSecret(ClientPublic):
    client_secret: str = Field(description="Shown this once; only a hash is kept.")


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the OAuth token type, not a secret)
    expires_in: int
    scope: str = ""


class KeyRotated(BaseModel):
    kid: str
    previous_kids_retire_at: UtcDatetime
