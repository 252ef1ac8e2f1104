"""Identities: organisations, people and partner systems, and how they prove who they are."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterable
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.events import OrganizationChanged, UserChanged
from gateway.models import ApiClient, Organization, User
from nrm.clock import utcnow
from nrm.errors import Conflict, Invalid, NotFound
from nrm.outbox import record_event

ROLES = frozenset(
    {
        "admin",
        "intake_officer",
        "case_worker",
        "provider",
        "fund_officer",
        "commission_member",
        "auditor",
        "system",
    }
)
SECTORS = frozenset({"state", "civil_society", "international", "operator"})
SECRET_PREFIX = "nrmcs_"  # noqa: S105 (a marker that makes leaked secrets easy to scan for)


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    # Verified against when the username is unknown, so both cases cost the same time.
    return _hasher().hash(secrets.token_urlsafe(16))


async def hash_secret(secret: str) -> str:
    # Argon2 is deliberately slow: keep it off the event loop.
    return await asyncio.to_thread(_hasher().hash, secret)


async def secret_matches(stored_hash: str | None, secret: str) -> bool:
    def check() -> bool:
        try:
            return _hasher().verify(stored_hash or _decoy_hash(), secret)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check) and stored_hash is not None


def new_client_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _checked_roles(roles: Iterable[str]) -> list[str]:
    chosen = sorted(set(roles))
    unknown = set(chosen) - ROLES
    if unknown:
        raise Invalid(f"Unknown roles: {', '.join(sorted(unknown))}.")
    if not chosen:
        raise Invalid("At least one role is needed.")
    return chosen


async def _active_organization(
    session: AsyncSession, org_id: str, roles: Iterable[str]
) -> Organization:
    organization = await session.get(Organization, org_id)
    if organization is None or not organization.active:
        raise Invalid("No such active organisation.")
    # `admin` acts across every organisation: it belongs to the platform's operator only.
    if "admin" in roles and organization.sector != "operator":
        raise Invalid("The admin role is for the platform operator's staff only.")
    return organization


async def create_organization(
    session: AsyncSession, *, org_id: str, name: str, sector: str
) -> Organization:
    if sector not in SECTORS:
        raise Invalid(f"Sector must be one of: {', '.join(sorted(SECTORS))}.")
    if await session.get(Organization, org_id) is not None:
        raise Conflict("An organisation with this id exists.")
    organization = Organization(id=org_id, name=name, sector=sector)
    session.add(organization)
    record_event(session, OrganizationChanged(org_id=org_id, sector=sector, active=True))
    return organization


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    org_id: str,
    roles: Iterable[str],
    language: str,
) -> User:
    roles = list(roles)
    await _active_organization(session, org_id, roles)
    taken = await session.exec(select(User.id).where(User.username == username))
    if taken.first() is not None:
        raise Conflict("This username is taken.")
    user = User(
        id=str(uuid.uuid4()),
        username=username,
        password_hash=await hash_secret(password),
        org_id=org_id,
        roles=_checked_roles(roles),
        language=language,
    )
    session.add(user)
    _user_changed(session, user)
    return user


def _user_changed(session: AsyncSession, user: User) -> None:
    record_event(
        session,
        UserChanged(
            user_id=user.id,
            org_id=user.org_id,
            roles=user.roles,
            language=user.language,
            active=user.active,
        ),
    )


async def deactivate_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    user.active = False
    session.add(user)
    _user_changed(session, user)
    return user


async def create_client(
    session: AsyncSession,
    *,
    client_id: str,
    org_id: str,
    roles: Iterable[str],
    scopes: Iterable[str],
) -> tuple[ApiClient, str]:
    """A new API client and its secret, which is shown this once and stored only hashed."""
    roles = list(roles)
    await _active_organization(session, org_id, roles)
    if await session.get(ApiClient, client_id) is not None:
        raise Conflict("A client with this id exists.")
    secret = new_client_secret()
    client = ApiClient(
        client_id=client_id,
        secret_hash=await hash_secret(secret),
        org_id=org_id,
        roles=_checked_roles(roles),
        scopes=sorted(set(scopes)),
    )
    session.add(client)
    return client, secret


async def _client(session: AsyncSession, client_id: str) -> ApiClient:
    client = await session.get(ApiClient, client_id)
    if client is None:
        raise NotFound("No such client.")
    return client


async def deactivate_client(session: AsyncSession, client_id: str) -> ApiClient:
    client = await _client(session, client_id)
    client.active = False
    session.add(client)
    return client


async def rotate_client_secret(session: AsyncSession, client_id: str) -> tuple[ApiClient, str]:
    """The old secret stops working at once; tokens already issued live out their 15 minutes."""
    client = await _client(session, client_id)
    secret = new_client_secret()
    client.secret_hash = await hash_secret(secret)
    client.secret_rotated_at = utcnow()
    session.add(client)
    return client, secret


async def authenticate_user(session: AsyncSession, username: str, password: str) -> User | None:
    user = (await session.exec(select(User).where(User.username == username))).first()
    matches = await secret_matches(user.password_hash if user else None, password)
    if user is None or not matches or not user.active:
        return None
    organization = await session.get(Organization, user.org_id)
    return user if organization is not None and organization.active else None


async def authenticate_client(
    session: AsyncSession, client_id: str, secret: str
) -> ApiClient | None:
    client = await session.get(ApiClient, client_id)
    matches = await secret_matches(client.secret_hash if client else None, secret)
    if client is None or not matches or not client.active:
        return None
    organization = await session.get(Organization, client.org_id)
    return client if organization is not None and organization.active else None
