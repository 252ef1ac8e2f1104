"""Concurrent approvals on a real PostgreSQL: the line is never overdrawn, a request is
approved once."""

from __future__ import annotations

import asyncio

import pytest

from services.fund import ledger
from tests.fund.conftest import Fund

pytestmark = pytest.mark.postgres

TJS_1000 = 100_000


async def test_fifty_concurrent_approvals_reserve_exactly_what_the_line_holds(
    pg_fund: Fund,
) -> None:
    source = await pg_fund.source(balance=10 * TJS_1000)
    request_ids = [await pg_fund.submitted(TJS_1000) for _ in range(50)]

    answers = await asyncio.gather(*(pg_fund.approve(r) for r in request_ids))

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 10 + [409] * 40
    refused = [a.json() for a in answers if a.status_code == 409]
    assert all(p["detail"].startswith("No budget line can cover") for p in refused)
    line = await pg_fund.line(source["id"])
    assert (line["available_minor"], line["reserved_minor"]) == (0, 10 * TJS_1000)
    async with pg_fund.db.transaction() as session:
        assert await ledger.discrepancies(session) == []


async def test_the_same_request_approved_by_two_officers_at_once_is_approved_once(
    pg_fund: Fund,
) -> None:
    source = await pg_fund.source(balance=10 * TJS_1000)
    for _ in range(5):
        request_id = await pg_fund.submitted(TJS_1000)
        first, second = await asyncio.gather(
            pg_fund.approve(request_id, "officer"), pg_fund.approve(request_id, "officer2")
        )
        assert sorted((first.status_code, second.status_code)) == [200, 409]
    line = await pg_fund.line(source["id"])
    assert (line["available_minor"], line["reserved_minor"]) == (5 * TJS_1000, 5 * TJS_1000)
