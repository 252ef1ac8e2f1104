"""Keyset paging of GET /cases when cases share a creation instant, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from gateway.keys import SigningKeys
from nrm.db import Database
from nrm.settings import Settings
from services.intake.models import Case
from tests.intake.conftest import CASES, Intake, case_body, running_intake
from tests.support import PostgresDatabases

SAME_INSTANT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


async def page_through(http: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = await http.get(CASES, params=params, headers=headers)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        if (cursor := page.json()["next_cursor"]) is None:
            return seen


async def register_at_one_instant(
    http: httpx.AsyncClient, db: Database, headers: dict[str, str], count: int
) -> list[str]:
    ids = []
    for _ in range(count):
        answer = await http.post(CASES, json=case_body(), headers=headers)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    async with db.transaction() as session:
        await session.exec(update(Case).values(created_at=SAME_INSTANT))
    return ids


async def test_cases_of_one_instant_are_each_listed_once_in_id_order(intake: Intake) -> None:
    ids = await register_at_one_instant(intake.http, intake.db, intake.police, 5)

    assert await page_through(intake.http, intake.police) == sorted(ids, reverse=True)


@pytest.mark.postgres
async def test_cases_of_one_instant_are_each_listed_once_on_postgresql(
    tmp_path: Path, postgres: PostgresDatabases, signing_keys: SigningKeys
) -> None:
    settings = Settings(data_dir=tmp_path, intake_database_url=await postgres.create("intake"))
    async with running_intake(settings, signing_keys) as pg:
        ids = await register_at_one_instant(pg.http, pg.db, pg.police, 5)

        assert await page_through(pg.http, pg.police) == sorted(ids, reverse=True)
