"""Ranking providers for a need, in one indexed SQL query.

Hard filters: service type, active service of an active organisation, eligibility
(gender, age band, children). Score parts (shown to the case worker):
region (same district 40, same region 30, neighbouring region 15, elsewhere 0),
language spoken 20, a free slot 25, each of the case's sensitivity flags the
service is equipped for 10. Ties go to more free slots, then the service id, so
equal inputs always rank the same.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, literal, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.referral.geography import NEIGHBOURS, region_of
from services.referral.models import CaseView, Organization, Service, unpack

REGION_DISTRICT, REGION_SAME, REGION_NEIGHBOUR = 40, 30, 15
LANGUAGE = 20
CAPACITY = 25
SENSITIVITY = 10

AGE_BANDS: dict[str, tuple[int, int]] = {
    "0-11": (0, 11),
    "12-17": (12, 17),
    "18-24": (18, 24),
    "25-34": (25, 34),
    "35-49": (35, 49),
    "50+": (50, 130),
}


@dataclass(frozen=True)
class Need:
    """What is matched: the case's codes and the kind of help needed."""

    service_type: str
    region: str | None = None
    language: str | None = None
    gender: str = "unknown"
    age_band: str = "unknown"
    is_child: bool = False
    sensitivity: tuple[str, ...] = ()

    @classmethod
    def of_case(cls, view: CaseView, service_type: str) -> Need:
        return cls(
            service_type=service_type,
            region=view.region,
            language=view.language,
            gender=view.gender,
            age_band=view.age_band,
            is_child=view.is_child,
            sensitivity=tuple(unpack(view.sensitivity)),
        )


@dataclass(frozen=True)
class Match:
    service: Service
    region: int
    language: int
    capacity: int
    sensitivity: int

    @property
    def score(self) -> int:
        return self.region + self.language + self.capacity + self.sensitivity


def _contains(column: Any, code: str) -> ColumnElement[bool]:
    return col(column).like(f"%,{code},%")


def _eligible(need: Need) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if need.gender != "unknown":
        filters.append(
            or_(col(Service.genders) == "", _contains(col(Service.genders), need.gender))
        )
    band = AGE_BANDS.get(need.age_band)
    if band is not None:
        low, high = band
        filters.append(or_(col(Service.min_age).is_(None), col(Service.min_age) <= high))
        filters.append(or_(col(Service.max_age).is_(None), col(Service.max_age) >= low))
    if need.is_child:
        filters.append(col(Service.accepts_children).is_(True))
    return filters


async def rank_providers(
    session: AsyncSession,
    need: Need,
    *,
    limit: int = 20,
    exclude: Collection[str] = (),
    require_free_slot: bool = False,
) -> list[Match]:
    region, district = region_of(need.region)
    neighbours = sorted(NEIGHBOURS.get(region or "", frozenset()))
    region_part = case(
        (
            and_(literal(district is not None), col(Service.district_code) == district),
            REGION_DISTRICT,
        ),
        (col(Service.region_code) == (region or ""), REGION_SAME),
        (col(Service.region_code).in_(neighbours or [""]), REGION_NEIGHBOUR),
        else_=0,
    )
    language_part = (
        case((_contains(col(Service.languages), need.language), LANGUAGE), else_=0)
        if need.language
        else literal(0)
    )
    capacity_part = case((col(Service.capacity_available) > 0, CAPACITY), else_=0)
    sensitivity_part: ColumnElement[int] = literal(0)
    for flag in sorted(set(need.sensitivity)):
        sensitivity_part = sensitivity_part + case(
            (_contains(col(Service.sensitivities), flag), SENSITIVITY), else_=0
        )
    score = region_part + language_part + capacity_part + sensitivity_part
    query = (
        select(
            Service,
            region_part.label("region_part"),
            language_part.label("language_part"),
            sensitivity_part.label("sensitivity_part"),
        )
        .join(Organization, col(Organization.id) == col(Service.organization_id))
        .where(
            col(Service.service_type) == need.service_type,
            col(Service.status) == "active",
            col(Organization.active).is_(True),
            *_eligible(need),
        )
        .order_by(score.desc(), col(Service.capacity_available).desc(), col(Service.id))
        .limit(limit)
    )
    if exclude:
        query = query.where(col(Service.id).not_in(list(exclude)))
    if require_free_slot:
        query = query.where(col(Service.capacity_available) > 0)
    # Region tiers, best first: each is an index range on (type, status, region), and a
    # farther tier is read only while it could still beat what the nearer ones gave.
    # The result is the same as ranking everything at once.
    best_rest = LANGUAGE + CAPACITY + SENSITIVITY * len(set(need.sensitivity))
    near = [region] if region else []
    tiers: list[tuple[ColumnElement[bool] | None, int]] = (
        [
            (col(Service.region_code).in_(near), REGION_DISTRICT),
            (col(Service.region_code).in_(neighbours), REGION_NEIGHBOUR),
            (col(Service.region_code).not_in(near + neighbours), 0),
        ]
        if region
        else [(None, 0)]
    )
    found: list[Match] = []
    for where, region_best in tiers:
        if _settled(found, limit, region_best + best_rest):
            break
        rows = (await session.exec(query if where is None else query.where(where))).all()
        found = sorted(found + _matches(rows), key=_order)[:limit]
    return found


def _order(match: Match) -> tuple[int, int, str]:
    return (-match.score, -match.service.capacity_available, match.service.id)


def _settled(found: list[Match], limit: int, best_possible: int) -> bool:
    """Nothing scoring at most `best_possible` can enter the top `limit` any more."""
    return len(found) >= limit and found[-1].score > best_possible


def _matches(rows: Sequence[tuple[Service, int, int, int]]) -> list[Match]:
    # The capacity part is the same rule as in SQL, read back from the row.
    return [
        Match(service, int(r), int(lang), CAPACITY if service.capacity_available > 0 else 0, int(s))
        for service, r, lang, s in rows
    ]
