"""Submitting requests: idempotency, known open cases, and the fund's policy."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from nrm.idempotency import IdempotencyRecord
from services.fund.config import FundSettings
from services.fund.models import FundRequest
from tests.fund.conftest import REQUESTS, Fund


async def test_a_request_without_an_idempotency_key_is_refused(fund: Fund) -> None:
    body = fund.request_body(await fund.case(), 10_000)
    response = await fund.client.post(REQUESTS, json=body, headers=fund.as_("requester"))
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]


async def test_a_replayed_request_answers_the_first_response_and_submits_once(fund: Fund) -> None:
    body = fund.request_body(await fund.case(), 10_000)
    headers = fund.as_("requester", **{"Idempotency-Key": "same"})
    first = await fund.client.post(REQUESTS, json=body, headers=headers)
    again = await fund.client.post(REQUESTS, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    listed = await fund.client.get(REQUESTS, headers=fund.as_("officer"))
    assert len(listed.json()["items"]) == 1


async def test_requests_for_unknown_or_closed_cases_are_refused(fund: Fund) -> None:
    unknown = await fund.submit("00000000-0000-4000-8000-000000000000", 10_000)
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "No such case."
    closed = await fund.submit(await fund.case(closed=True), 10_000)
    assert closed.status_code == 422
    assert "closed" in closed.json()["detail"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount_minor": 0},
        {"amount_minor": -100},
        {"amount_minor": 1000.0},
        {"amount_minor": True},
        {"currency": "ABC"},
        {"purpose": "yachts"},
        {"payee": {"kind": "person", "method": "mobile_wallet"}},
        {"payee": {"kind": "organization", "method": "cash_office"}},
        {"surprise": 1},
    ],
)
async def test_bad_requests_are_refused_and_nothing_is_stored(
    fund: Fund, overrides: dict[str, Any]
) -> None:
    response = await fund.submit(await fund.case(), 10_000, **overrides)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    async with fund.db.transaction() as session:
        assert (await session.exec(select(FundRequest))).all() == []


@pytest.fixture
def fund_settings() -> FundSettings:
    return FundSettings(request_max_minor=50_000, case_purpose_cap_minor=80_000)


async def test_a_request_above_the_per_request_maximum_is_refused(fund: Fund) -> None:
    response = await fund.submit(await fund.case(), 50_001)
    assert response.status_code == 422
    assert response.json()["max_minor"] == 50_000


async def test_the_per_case_per_purpose_cap_counts_earlier_requests(fund: Fund) -> None:
    case_id = await fund.case()
    assert (await fund.submit(case_id, 50_000)).status_code == 201
    over = await fund.submit(case_id, 30_001)
    assert over.status_code == 422
    assert over.json()["used_minor"] == 50_000
    assert (await fund.submit(case_id, 30_000)).status_code == 201
    other_purpose = await fund.submit(case_id, 30_000, purpose="medical")
    assert other_purpose.status_code == 201


async def test_rejected_requests_do_not_count_against_the_cap(fund: Fund) -> None:
    case_id = await fund.case()
    first = await fund.submit(case_id, 50_000)
    assert (await fund.reject(first.json()["id"])).status_code == 200
    assert (await fund.submit(case_id, 50_000)).status_code == 201


async def test_a_payee_account_is_stored_encrypted_and_answered_only_as_a_hint(
    fund: Fund,
) -> None:
    payee = {"kind": "person", "method": "mobile_wallet", "account": "+992 900 123 4567"}
    response = await fund.submit(await fund.case(), 10_000, payee=payee)
    assert response.status_code == 201, response.text
    assert response.json()["payee"]["account_hint"] == "…4567"
    assert "900 123" not in response.text
    async with fund.db.transaction() as session:
        stored = (await session.exec(select(FundRequest))).one()
    assert stored.payee_account_sealed is not None
    assert "900" not in stored.payee_account_sealed


async def test_the_justification_does_not_rest_in_the_idempotency_store(fund: Fund) -> None:
    await fund.submitted(10_000)
    async with fund.db.transaction() as session:
        stored = (await session.exec(select(IdempotencyRecord.response_body))).all()
    assert stored, "the answer was kept for replays"
    assert all("Ticket home" not in (body or "") for body in stored)
