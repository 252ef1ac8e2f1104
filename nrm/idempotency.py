"""Idempotency-Key for creating POSTs (IETF httpapi draft, as CONTRACT.md says).

The key is claimed in its own short transaction (so a concurrent retry sees it and
gets 409), and the response is stored in the same transaction as the effect
(so "done" is committed exactly when the effect is). A claim whose request died
before committing expires after a lease and may be taken over by a retry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import DateTime, Integer, String, Text, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import CurrentPrincipal, Principal
from nrm.clock import as_utc, utcnow
from nrm.db import Database, SessionDep, after_rollback
from nrm.errors import BadRequest, Conflict, Invalid

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
LEASE = timedelta(seconds=60)
M = TypeVar("M", bound=BaseModel)
MAX_KEY_LENGTH = 255


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    # Keys are scoped to the caller and the route: two clients may pick the same key.
    scope: str = Field(primary_key=True, max_length=400)
    key: str = Field(primary_key=True, max_length=MAX_KEY_LENGTH)
    request_hash: str = Field(sa_type=String(64))
    status_code: int | None = Field(default=None, sa_type=Integer)
    response_body: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    lease_until: datetime = Field(sa_type=DateTime(timezone=True))


class ReplayedResponse(Exception):
    """Short-circuits a request whose key already completed: the first answer is sent."""

    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.body = body

    def response(self) -> JSONResponse:
        return JSONResponse(
            json.loads(self.body), status_code=self.status_code, headers={REPLAYED_HEADER: "true"}
        )


class Idempotency:
    """What a creating route holds: `remember()` stores its answer with its effect."""

    def __init__(self, scope: str | None, key: str | None) -> None:
        self.scope = scope
        self.key = key

    async def remember(
        self,
        session: AsyncSession,
        result: M,
        *,
        status_code: int = 201,
        stored: BaseModel | None = None,
    ) -> M:
        """Keep the answer for replays, in the effect's transaction. `stored` replaces it
        when the answer holds something that must not rest here (free text, a secret)."""
        if self.key is None or self.scope is None:
            return result
        record = await session.get(IdempotencyRecord, (self.scope, self.key))
        if record is not None:
            record.status_code = status_code
            record.response_body = json.dumps(jsonable_encoder(stored or result))
            session.add(record)
        return result


def _request_hash(method: str, path: str, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


async def _claim(db: Database, scope: str, key: str, request_hash: str) -> None:
    now = utcnow()
    async with db.transaction() as session:
        record = await session.get(IdempotencyRecord, (scope, key))
        if record is None:
            session.add(
                IdempotencyRecord(
                    scope=scope, key=key, request_hash=request_hash, lease_until=now + LEASE
                )
            )
            try:
                await session.flush()
            except IntegrityError:
                raise Conflict("A request with this Idempotency-Key is in progress.") from None
            return
        if record.request_hash != request_hash:
            raise Invalid("This Idempotency-Key was used with a different request.")
        if record.status_code is not None and record.response_body is not None:
            raise ReplayedResponse(record.status_code, record.response_body)
        if as_utc(record.lease_until) > now:
            raise Conflict("A request with this Idempotency-Key is in progress.")
        record.lease_until = now + LEASE  # the first attempt died without committing: take over
        session.add(record)


async def _release(db: Database, scope: str, key: str) -> None:
    """Forget an unfinished claim, so a corrected retry can run."""
    async with db.transaction() as session:
        await session.exec(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.scope == scope,  # type: ignore[arg-type]
                IdempotencyRecord.key == key,  # type: ignore[arg-type]
                IdempotencyRecord.status_code.is_(None),  # type: ignore[union-attr]
            )
        )


async def _begin(request: Request, principal: Principal, *, required: bool) -> Idempotency:
    key = request.headers.get(HEADER)
    if key is None:
        if required:
            raise BadRequest("This request requires an Idempotency-Key header.")
        return Idempotency(None, None)
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.")
    scope = f"{principal.org}:{principal.subject}:{request.method} {request.url.path}"
    body_hash = _request_hash(request.method, request.url.path, await request.body())
    await _claim(request.app.state.db, scope, key, body_hash)
    return Idempotency(scope, key)


def _dependency(*, required: bool) -> Callable[..., Awaitable[Idempotency]]:
    async def idempotency(
        request: Request, principal: CurrentPrincipal, session: SessionDep
    ) -> Idempotency:
        claimed = await _begin(request, principal, required=required)
        scope, key = claimed.scope, claimed.key
        if scope is not None and key is not None:
            # The request's unit of work failing frees the claim. Not a generator
            # dependency with its own exit: those cost FastAPI ~0.1 ms a request.
            db: Database = request.app.state.db
            after_rollback(session, lambda: _release(db, scope, key))
        return claimed

    return idempotency


IdempotencyDep = Annotated[Idempotency, Depends(_dependency(required=False))]
RequiredIdempotencyDep = Annotated[Idempotency, Depends(_dependency(required=True))]
