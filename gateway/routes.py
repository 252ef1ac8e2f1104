"""The gateway's admin API under /api/v1/gateway: organisations, users, clients, keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlmodel import select

from gateway import identity
from gateway.keys import SigningKeys
from gateway.models import ApiClient, Organization, User
from gateway.schemas import (
    ClientCreate,
    ClientPublic,
    ClientWithSecret,
    KeyRotated,
    OrganizationCreate,
    OrganizationPublic,
    UserCreate,
    UserPublic,
)
from nrm.auth import Principal, require_roles
from nrm.clock import utcnow
from nrm.db import SessionDep
from nrm.idempotency import IdempotencyDep
from nrm.paging import Cursor, Limit, Page, keyset_page
from nrm.settings import Settings

router = APIRouter(prefix="/api/v1/gateway", tags=["identity administration"])
Admin = Annotated[Principal, Depends(require_roles("admin"))]


@router.post("/organizations", status_code=201)
async def create_organization(
    body: OrganizationCreate, _: Admin, session: SessionDep, idempotency: IdempotencyDep
) -> OrganizationPublic:
    organization = await identity.create_organization(
        session, org_id=body.id, name=body.name, sector=body.sector
    )
    public = OrganizationPublic.model_validate(organization, from_attributes=True)
    return await idempotency.remember(session, public)


@router.get("/organizations")
async def list_organizations(
    _: Admin, session: SessionDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[OrganizationPublic]:
    rows, next_cursor = await keyset_page(
        session, select(Organization), Organization.id, limit=limit, cursor=cursor
    )
    items = [OrganizationPublic.model_validate(row, from_attributes=True) for row in rows]
    return Page(items=items, next_cursor=next_cursor)


@router.post("/users", status_code=201)
async def create_user(
    body: UserCreate, _: Admin, session: SessionDep, idempotency: IdempotencyDep
) -> UserPublic:
    user = await identity.create_user(
        session,
        username=body.username,
        password=body.password,
        org_id=body.org_id,
        roles=body.roles,
        language=body.language,
    )
    return await idempotency.remember(
        session, UserPublic.model_validate(user, from_attributes=True)
    )


@router.get("/users")
async def list_users(
    _: Admin, session: SessionDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[UserPublic]:
    rows, next_cursor = await keyset_page(
        session, select(User), User.username, limit=limit, cursor=cursor
    )
    items = [UserPublic.model_validate(row, from_attributes=True) for row in rows]
    return Page(items=items, next_cursor=next_cursor)


@router.post("/users/{user_id}/deactivate")
async def deactivate_user(user_id: str, _: Admin, session: SessionDep) -> UserPublic:
    user = await identity.deactivate_user(session, user_id)
    return UserPublic.model_validate(user, from_attributes=True)


# No Idempotency-Key on the two answers that carry a secret: a stored answer would keep
# the secret at rest. A retried create gets 409; a lost rotation is simply rotated again.
@router.post("/clients", status_code=201)
async def create_client(body: ClientCreate, _: Admin, session: SessionDep) -> ClientWithSecret:
    client, secret = await identity.create_client(
        session, client_id=body.client_id, org_id=body.org_id, roles=body.roles, scopes=body.scopes
    )
    return _with_secret(client, secret)


@router.get("/clients")
async def list_clients(
    _: Admin, session: SessionDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[ClientPublic]:
    rows, next_cursor = await keyset_page(
        session, select(ApiClient), ApiClient.client_id, limit=limit, cursor=cursor
    )
    items = [ClientPublic.model_validate(row, from_attributes=True) for row in rows]
    return Page(items=items, next_cursor=next_cursor)


@router.post("/clients/{client_id}/deactivate")
async def deactivate_client(client_id: str, _: Admin, session: SessionDep) -> ClientPublic:
    client = await identity.deactivate_client(session, client_id)
    return ClientPublic.model_validate(client, from_attributes=True)


@router.post("/clients/{client_id}/secret")
async def rotate_client_secret(client_id: str, _: Admin, session: SessionDep) -> ClientWithSecret:
    client, secret = await identity.rotate_client_secret(session, client_id)
    return _with_secret(client, secret)


def _with_secret(client: ApiClient, secret: str) -> ClientWithSecret:
    public = ClientPublic.model_validate(client, from_attributes=True)
    return ClientWithSecret(**public.model_dump(), client_secret=secret)


@router.post("/keys/rotate")
async def rotate_signing_key(request: Request, _: Admin) -> KeyRotated:
    """A new key signs from now on; the old one stays in the JWKS until its tokens expire."""
    keys: SigningKeys = request.app.state.keys
    settings: Settings = request.app.state.settings
    retire_after = settings.token_ttl + timedelta(minutes=5)  # clock skew and caches
    kid = keys.rotate(retire_after)
    return KeyRotated(kid=kid, previous_kids_retire_at=utcnow() + retire_after)
