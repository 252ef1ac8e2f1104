"""The directory of help: organisations and their services, kept by providers themselves."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from nrm.auth import Principal
from nrm.errors import Conflict, Forbidden, Invalid, NotFound
from nrm.paging import decode_cursor, keyset_page
from services.referral.models import Location, Organization, Service, pack, unpack
from services.referral.schemas import (
    DirectoryPage,
    OrganizationCreate,
    OrganizationPublic,
    ServiceCreate,
    ServicePublic,
    ServiceUpdate,
)

Row = TypeVar("Row")


def invalid(field: str, detail: str) -> Invalid:
    """A 422 naming the offending field (never echoing its value)."""
    return Invalid(detail, extra={"errors": [{"loc": ["body", field], "msg": detail}]})


async def hsds_page(
    session: AsyncSession,
    query: SelectOfScalar[Row],
    key: Any,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None, dict[str, int]]:
    """A keyset page plus HSDS's total_items/total_pages/page_number/size."""
    rows, next_cursor = await keyset_page(session, query, key, limit=limit, cursor=cursor)
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    before = 0
    if cursor is not None:
        earlier = query.where(key <= decode_cursor(cursor)).subquery()
        before = (await session.exec(select(func.count()).select_from(earlier))).one()
    paging = {
        "total_items": total,
        "total_pages": max(1, math.ceil(total / limit)),
        "page_number": before // limit + 1,
        "size": limit,
    }
    return rows, next_cursor, paging


def organization_public(org: Organization) -> OrganizationPublic:
    return OrganizationPublic.model_validate(org, from_attributes=True)


def service_public(service: Service) -> ServicePublic:
    data = service.model_dump()
    for field in ("languages", "genders", "sensitivities"):
        data[field] = unpack(data[field])
    return ServicePublic.model_validate(data)


async def create_organization(session: AsyncSession, body: OrganizationCreate) -> Organization:
    if await session.get(Organization, body.id) is not None:
        raise Conflict("An organization with this id exists.", extra={"field": "id"})
    org = Organization(**body.model_dump())
    session.add(org)
    await session.flush()
    return org


async def list_organizations(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> DirectoryPage[OrganizationPublic]:
    rows, next_cursor, paging = await hsds_page(
        session, select(Organization), Organization.id, limit=limit, cursor=cursor
    )
    return DirectoryPage(
        items=[organization_public(o) for o in rows], next_cursor=next_cursor, **paging
    )


def may_manage(principal: Principal, organization_id: str) -> bool:
    return principal.has_role("admin") or (
        principal.org == organization_id and principal.has_role("provider")
    )


async def create_service(
    session: AsyncSession, principal: Principal, body: ServiceCreate, now: datetime
) -> Service:
    if not may_manage(principal, body.organization_id):
        raise Forbidden("Only the organization's providers or an admin may add its services.")
    org = await session.get(Organization, body.organization_id)
    if org is None:
        raise invalid("organization_id", "No such organization in the directory.")
    location = await session.get(Location, body.location_id)
    if location is None:
        raise invalid("location_id", "No such location in the directory.")
    data = body.model_dump()
    for field in ("languages", "genders", "sensitivities"):
        data[field] = pack(data[field])
    if data["capacity_available"] is None:
        data["capacity_available"] = body.capacity_total
    service = Service(
        id=str(uuid.uuid4()),
        region_code=location.region_code,
        district_code=location.id if location.kind == "district" else None,
        created_at=now,
        updated_at=now,
        **data,
    )
    session.add(service)
    await session.flush()
    return service


async def list_services(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    service_type: str | None = None,
    region: str | None = None,
    organization_id: str | None = None,
    status: str | None = None,
) -> DirectoryPage[ServicePublic]:
    query = select(Service)
    if service_type is not None:
        query = query.where(Service.service_type == service_type)
    if region is not None:
        query = query.where(
            or_(col(Service.region_code) == region, col(Service.district_code) == region)
        )
    if organization_id is not None:
        query = query.where(Service.organization_id == organization_id)
    if status is not None:
        query = query.where(Service.status == status)
    rows, next_cursor, paging = await hsds_page(
        session, query, Service.id, limit=limit, cursor=cursor
    )
    return DirectoryPage(items=[service_public(s) for s in rows], next_cursor=next_cursor, **paging)


async def update_service(
    session: AsyncSession,
    principal: Principal,
    service_id: str,
    body: ServiceUpdate,
    now: datetime,
) -> Service:
    service = await session.get(Service, service_id)
    if service is None:
        raise NotFound("No such service.")
    if not may_manage(principal, service.organization_id):
        raise Forbidden("Only the service's organization or an admin may change it.")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    values: dict[str, Any] = {"updated_at": now}
    if "status" in changes:
        values["status"] = changes["status"]
    total = changes.get("capacity_total")
    available = changes.get("capacity_available")
    if total is not None and available is not None and available > total:
        raise invalid("capacity_available", "capacity_available must not exceed capacity_total.")
    if total is not None and available is None and total < service.capacity_total:
        # Fewer places: free slots shrink with them, never below zero.
        available = min(service.capacity_available, total)
    if total is not None:
        values["capacity_total"] = total
    if available is not None:
        if total is None and available > service.capacity_total:
            raise invalid(
                "capacity_available", "capacity_available must not exceed capacity_total."
            )
        values["capacity_available"] = available
    # One statement: the CHECK constraint refuses any count outside 0..total.
    try:
        async with session.begin_nested():
            await session.exec(
                update(Service).where(col(Service.id) == service_id).values(**values)
            )
    except IntegrityError:
        raise invalid("capacity_available", "Capacity must stay between 0 and the total.") from None
    await session.refresh(service)
    return service


async def reserve_slot(session: AsyncSession, service_id: str) -> bool:
    """Take one free slot, atomically; False when none is left."""
    result = await session.exec(
        update(Service)
        .where(col(Service.id) == service_id, col(Service.capacity_available) > 0)
        .values(capacity_available=Service.capacity_available - 1)
    )
    return bool(result.rowcount)


async def release_slot(session: AsyncSession, service_id: str) -> None:
    await session.exec(
        update(Service)
        .where(
            col(Service.id) == service_id,
            col(Service.capacity_available) < col(Service.capacity_total),
        )
        .values(capacity_available=Service.capacity_available + 1)
    )
