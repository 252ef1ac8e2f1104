"""Ranking: who fits a need best, and why (table-tested on the SQL that ranks)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlmodel import select

from nrm.db import Database
from services.referral.geography import NEIGHBOURS, PLACES, region_of
from services.referral.matching import AGE_BANDS, Need, rank_providers
from services.referral.models import Service, unpack
from tests.referral.conftest import add_service

# Each row: the case's need, two services (as add_service keywords), which one must rank first.
RANKING: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "language the person speaks beats one they do not",
        {"language": "uz"},
        {"languages": ("ru",)},
        {"languages": ("uz", "ru")},
    ),
    (
        "same district beats same region",
        {"region": "TJ-SU-KHU"},
        {"place": "TJ-SU-IST"},
        {"place": "TJ-SU-KHU"},
    ),
    (
        "same region beats a neighbouring region",
        {"region": "TJ-DU"},
        {"place": "TJ-RA-VAH"},
        {"place": "TJ-DU-SIN"},
    ),
    (
        "a neighbouring region beats one across the country",
        {"region": "TJ-KT-BOK"},
        {"place": "TJ-SU-KHU"},
        {"place": "TJ-GB-KHO"},
    ),
    (
        "a free place beats a full house",
        {},
        {"capacity": 4, "available": 0},
        {"capacity": 4, "available": 1},
    ),
    (
        "more free places break a tie",
        {},
        {"capacity": 9, "available": 2},
        {"capacity": 9, "available": 7},
    ),
    (
        "a provider equipped for sexual exploitation ranks first for such a case",
        {"sensitivity": ("sexual_exploitation",)},
        {"sensitivities": ("labour_exploitation",)},
        {"sensitivities": ("sexual_exploitation",)},
    ),
]


@pytest.mark.parametrize(
    ("rule", "need", "worse", "better"), RANKING, ids=[row[0] for row in RANKING]
)
async def test_ranking_prefers_the_better_fit(
    db: Database, rule: str, need: dict[str, Any], worse: dict[str, Any], better: dict[str, Any]
) -> None:
    worse_id = await add_service(db, "org-worse", **worse)
    better_id = await add_service(db, "org-better", **better)
    facts: dict[str, Any] = {"region": "TJ-DU", "language": "tg", **need}
    async with db.transaction() as session:
        ranked = await rank_providers(session, Need(service_type="shelter", **facts))
    assert [m.service.id for m in ranked] == [better_id, worse_id], rule


# Each row: the case's facts, the service's eligibility, whether the service may be offered.
ELIGIBILITY: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("women-only service for a woman", {"gender": "female"}, {"genders": ("female",)}, True),
    ("women-only service for a man", {"gender": "male"}, {"genders": ("female",)}, False),
    ("unknown gender is not excluded", {"gender": "unknown"}, {"genders": ("female",)}, True),
    ("adults-only service for a child", {"age_band": "12-17", "is_child": True}, {}, False),
    (
        "child-capable service for a child",
        {"age_band": "12-17", "is_child": True},
        {"accepts_children": True},
        True,
    ),
    ("age range below the person's", {"age_band": "50+"}, {"max_age": 35}, False),
    ("age range covering the person's", {"age_band": "25-34"}, {"min_age": 18}, True),
    ("inactive service", {}, {"status": "inactive"}, False),
    ("temporarily closed service", {}, {"status": "temporarily_closed"}, False),
    ("another type of service", {}, {"service_type": "medical"}, False),
]


@pytest.mark.parametrize(
    ("rule", "case", "service", "offered"), ELIGIBILITY, ids=[row[0] for row in ELIGIBILITY]
)
async def test_eligibility_filters_providers(
    db: Database, rule: str, case: dict[str, Any], service: dict[str, Any], offered: bool
) -> None:
    service_id = await add_service(db, "org-a", **service)
    async with db.transaction() as session:
        ranked = await rank_providers(session, Need(service_type="shelter", **case))
    assert (service_id in [m.service.id for m in ranked]) is offered, rule


async def test_score_parts_explain_the_rank(db: Database) -> None:
    await add_service(
        db, "org-a", place="TJ-DU-SHO", languages=("tg",), sensitivities=("sexual_exploitation",)
    )
    need = Need(
        service_type="shelter",
        region="TJ-DU-SHO",
        language="tg",
        sensitivity=("sexual_exploitation", "child"),
    )
    async with db.transaction() as session:
        [match] = await rank_providers(session, need)
    assert (match.region, match.language, match.capacity, match.sensitivity) == (40, 20, 25, 10)
    assert match.score == 95


async def test_equal_inputs_rank_the_same_every_time(db: Database) -> None:
    for index in range(8):
        await add_service(
            db, f"org-{index}", service_id=f"00000000-0000-0000-0000-00000000000{index}"
        )
    async with db.transaction() as session:
        orders = [
            [m.service.id for m in await rank_providers(session, Need(service_type="shelter"))]
            for _ in range(3)
        ]
    assert orders[0] == sorted(orders[0])
    assert orders[0] == orders[1] == orders[2]


def _expected_order(services: list[Service], need: Need, limit: int) -> list[str]:
    """The documented rules, applied row by row in Python, for comparison with the SQL."""
    region, district = region_of(need.region)
    near = NEIGHBOURS.get(region or "", frozenset())
    band = AGE_BANDS.get(need.age_band)
    scored = []
    for s in services:
        genders, languages, flags = unpack(s.genders), unpack(s.languages), unpack(s.sensitivities)
        if s.service_type != need.service_type or s.status != "active":
            continue
        if need.gender != "unknown" and genders and need.gender not in genders:
            continue
        if band and (
            (s.min_age or 0) > band[1] or (s.max_age if s.max_age is not None else 999) < band[0]
        ):
            continue
        if need.is_child and not s.accepts_children:
            continue
        score = (
            (
                40
                if district and s.district_code == district
                else 30
                if s.region_code == region
                else 15
                if s.region_code in near
                else 0
            )
            + (20 if need.language in languages else 0)
            + (25 if s.capacity_available > 0 else 0)
            + 10 * len(set(need.sensitivity) & set(flags))
        )
        scored.append((-score, -s.capacity_available, s.id))
    return [service_id for _, _, service_id in sorted(scored)[:limit]]


async def test_ranking_in_sql_equals_the_rules_applied_to_every_row(db: Database) -> None:
    rng = random.Random(7)
    places = [p.code for p in PLACES]
    for index in range(150):
        total = rng.randint(0, 3)
        await add_service(
            db,
            f"org-{index % 7}",
            service_type=rng.choice(("shelter", "medical")),
            place=rng.choice(places),
            languages=tuple(rng.sample(("tg", "ru", "uz", "en"), 2)),
            genders=rng.choice(((), ("female",), ("male",))),
            accepts_children=rng.random() < 0.4,
            sensitivities=rng.choice(((), ("child",), ("sexual_exploitation",))),
            capacity=total,
            available=rng.randint(0, total),
            status=rng.choice(("active", "active", "inactive")),
            min_age=rng.choice((None, 18)),
            max_age=rng.choice((None, 40)),
        )
    async with db.transaction() as session:
        services = list((await session.exec(select(Service))).all())
        for _ in range(60):
            need = Need(
                service_type=rng.choice(("shelter", "medical")),
                region=rng.choice([*places, None]),
                language=rng.choice(("tg", "uz", "en", None)),
                gender=rng.choice(("female", "male", "unknown")),
                age_band=rng.choice(("12-17", "25-34", "50+", "unknown")),
                is_child=rng.random() < 0.2,
                sensitivity=tuple(rng.sample(("child", "sexual_exploitation"), rng.randint(0, 2))),
            )
            limit = rng.choice((1, 3, 10))
            ranked = await rank_providers(session, need, limit=limit)
            assert [m.service.id for m in ranked] == _expected_order(services, need, limit), need
