"""Payouts: at a cash office, and through the provider by the background worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel import select

from nrm.outbox import OutboxMessage
from services.fund import ledger
from services.fund.config import FundSettings
from tests.fund.conftest import Fund
from tests.fund.provider import ProviderBook, provider_server
from tests.support import eventually

WALLET = {"kind": "person", "method": "mobile_wallet", "account": "+992900111222"}


@pytest.fixture
def book() -> ProviderBook:
    return ProviderBook(failing_accounts={"+992900000000": "account_blocked"})


@pytest.fixture
async def provider_url(book: ProviderBook) -> AsyncIterator[str]:
    async with provider_server(book) as url:
        yield url


@pytest.fixture
def fund_settings(provider_url: str) -> FundSettings:
    return FundSettings(
        payout_provider_url=provider_url, payout_poll_seconds=0.05, payout_timeout_seconds=0.5
    )


async def _settled(fund: Fund, request_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (await fund.get(request_id)).json()
    return body if body["status"] in ("paid", "failed") else None


async def _event_types(fund: Fund) -> list[str]:
    async with fund.db.transaction() as session:
        return list((await session.exec(select(OutboxMessage.type))).all())


async def test_a_cash_handover_with_a_receipt_pays_the_reservation(fund: Fund) -> None:
    source = await fund.source(balance=1_000_000)
    request_id = await fund.submitted(100_000)
    assert (await fund.approve(request_id)).status_code == 200
    paid = await fund.client.post(
        f"/api/v1/fund/requests/{request_id}/cash-handover",
        json={"receipt_number": "KO-2026-0042"},
        headers=fund.as_("officer"),
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    assert paid.json()["disbursement"]["receipt_number"] == "KO-2026-0042"
    line = await fund.line(source["id"])
    assert (line["available_minor"], line["reserved_minor"], line["paid_minor"]) == (
        900_000,
        0,
        100_000,
    )
    again = await fund.client.post(
        f"/api/v1/fund/requests/{request_id}/cash-handover",
        json={"receipt_number": "KO-2026-0043"},
        headers=fund.as_("officer"),
    )
    assert again.status_code == 409
    assert (await fund.line(source["id"]))["paid_minor"] == 100_000
    assert "nrm.fund.disbursement.paid.v1" in await _event_types(fund)


async def test_a_request_not_approved_cannot_be_paid(fund: Fund) -> None:
    source = await fund.source(balance=1_000_000)
    request_id = await fund.submitted(100_000)
    response = await fund.client.post(
        f"/api/v1/fund/requests/{request_id}/cash-handover",
        json={"receipt_number": "KO-1"},
        headers=fund.as_("officer"),
    )
    assert response.status_code == 409
    assert response.json()["status"] == "pending"
    assert (await fund.line(source["id"]))["paid_minor"] == 0


async def test_the_worker_pays_through_the_provider_once(fund: Fund, book: ProviderBook) -> None:
    source = await fund.source(balance=1_000_000)
    request_id = await fund.submitted(100_000, payee=WALLET)
    approved = await fund.approve(request_id)
    disbursement_id = approved.json()["disbursement"]["id"]

    settled = await eventually(lambda: _settled(fund, request_id))

    assert settled["status"] == "paid"
    assert book.posts[disbursement_id] == 1
    assert book.paid(disbursement_id) == 1
    line = await fund.line(source["id"])
    assert (line["reserved_minor"], line["paid_minor"]) == (0, 100_000)


async def test_a_provider_failure_voids_the_reservation_with_a_mapped_code(
    fund: Fund, book: ProviderBook
) -> None:
    source = await fund.source(balance=1_000_000)
    payee = {**WALLET, "account": "+992900000000"}
    request_id = await fund.submitted(100_000, payee=payee)
    assert (await fund.approve(request_id)).status_code == 200

    settled = await eventually(lambda: _settled(fund, request_id))

    assert settled["status"] == "failed"
    assert settled["disbursement"]["failure_code"] == "payee_account_blocked"
    line = await fund.line(source["id"])
    assert (line["available_minor"], line["reserved_minor"], line["paid_minor"]) == (
        1_000_000,
        0,
        0,
    )
    assert "nrm.fund.disbursement.failed.v1" in await _event_types(fund)


async def test_on_a_timeout_the_worker_asks_for_the_status_before_calling_again(
    fund: Fund, book: ProviderBook
) -> None:
    book.answer_delay = 2.0
    await fund.source(balance=1_000_000)
    request_id = await fund.submitted(100_000, payee=WALLET)
    disbursement_id = (await fund.approve(request_id)).json()["disbursement"]["id"]

    settled = await eventually(lambda: _settled(fund, request_id))

    assert settled["status"] == "paid"
    assert book.posts[disbursement_id] == 1
    assert book.status_queries[disbursement_id] >= 1
    async with fund.db.transaction() as session:
        assert await ledger.discrepancies(session) == []
