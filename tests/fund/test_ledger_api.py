"""Sources, allocations, the ledger and balances through the API."""

from __future__ import annotations

import pytest

from tests.fund.conftest import SOURCES, Fund


async def test_allocation_makes_money_available_on_the_line(fund: Fund) -> None:
    source = await fund.source(balance=1_000_000)
    line = source["lines"][0]
    assert (line["allocated_minor"], line["available_minor"], line["reserved_minor"]) == (
        1_000_000,
        1_000_000,
        0,
    )
    ledger = await fund.client.get("/api/v1/fund/ledger", headers=fund.as_("auditor"))
    assert ledger.status_code == 200, ledger.text
    [entry] = ledger.json()["items"]
    assert (entry["kind"], entry["debit"], entry["credit"], entry["amount_minor"]) == (
        "allocation",
        "available",
        "funding",
        1_000_000,
    )


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(0, "TJS"), (-5, "TJS"), (1000.0, "TJS"), ("1000", "TJS"), (1000, "XXX"), (1000, "tjs")],
)
async def test_bad_allocations_are_refused_and_change_nothing(
    fund: Fund, amount: object, currency: str
) -> None:
    source = await fund.source(balance=500)
    response = await fund.client.post(
        f"{SOURCES}/{source['id']}/allocations",
        json={
            "purpose": "return_travel",
            "amount_minor": amount,
            "currency": currency,
            "reference": "r",
            "value_date": "2026-11-01",
        },
        headers=fund.as_("officer"),
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (await fund.line(source["id"]))["available_minor"] == 500


async def test_an_allocation_to_a_purpose_without_a_line_is_refused(fund: Fund) -> None:
    source = await fund.source(balance=500)
    response = await fund.client.post(
        f"{SOURCES}/{source['id']}/allocations",
        json={
            "purpose": "medical",
            "amount_minor": 100,
            "reference": "r",
            "value_date": "2026-11-01",
        },
        headers=fund.as_("officer"),
    )
    assert response.status_code == 422
    assert "no budget line for medical" in response.json()["detail"]


async def test_a_source_with_an_unknown_purpose_or_currency_is_refused(fund: Fund) -> None:
    for body in (
        {"kind": "donor", "name": "x", "lines": [{"purpose": "yachts"}]},
        {"kind": "donor", "name": "x", "currency": "ABC"},
        {"kind": "lottery", "name": "x"},
    ):
        response = await fund.client.post(SOURCES, json=body, headers=fund.as_("officer"))
        assert response.status_code == 422, body
    listed = await fund.client.get(SOURCES, headers=fund.as_("officer"))
    assert listed.json()["items"] == []


async def test_a_source_without_lines_gets_one_per_purpose(fund: Fund) -> None:
    created = await fund.client.post(
        SOURCES, json={"kind": "state_budget", "name": "State"}, headers=fund.as_("officer")
    )
    assert created.status_code == 201
    purposes = {line["purpose"] for line in created.json()["lines"]}
    assert purposes == {"shelter", "medical", "legal", "return_travel", "subsistence", "other"}


async def test_balance_report_shows_sources_lines_and_pending_reservations(fund: Fund) -> None:
    await fund.source(balance=1_000_000)
    request_id = await fund.submitted(100_000)
    assert (await fund.approve(request_id)).status_code == 200
    report = await fund.client.get("/api/v1/fund/reports/balances", headers=fund.as_("auditor"))
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["pending_reservations"] == 1
    assert body["reserved_minor_by_currency"] == {"TJS": 100_000}
    assert body["sources"][0]["lines"][0]["available_minor"] == 900_000
