"""Cursor paging for lists (`?limit=&cursor=` → `{"items", "next_cursor"}`, CONTRACT.md).

Keyset paging on a unique, ordered column: stable while rows are added, and the
cursor is opaque to callers so the column can change without breaking them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from nrm.errors import BadRequest

T = TypeVar("T")
Row = TypeVar("Row")

Limit = Annotated[int, Query(ge=1, le=200, description="Items per page.")]
Cursor = Annotated[
    str | None, Query(max_length=400, description="`next_cursor` of the previous page.")
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise BadRequest("The cursor is not one this API gave out.") from None


async def keyset_page(
    session: AsyncSession,
    query: SelectOfScalar[Row],
    key: Any,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """Rows after the cursor, ordered by `key`; the next cursor if there may be more."""
    if cursor is not None:
        query = query.where(key > decode_cursor(cursor))
    rows = list((await session.exec(query.order_by(key).limit(limit + 1))).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(str(getattr(rows[-1], key.key)))
