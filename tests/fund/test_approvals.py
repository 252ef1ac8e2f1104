"""Maker-checker, the commission quorum and reservations."""

from __future__ import annotations

import pytest

from services.fund.config import FundSettings
from tests.fund.conftest import Fund


@pytest.fixture
def fund_settings() -> FundSettings:
    return FundSettings(commission_threshold_minor=200_000)


async def test_an_officer_approval_reserves_the_amount(fund: Fund) -> None:
    source = await fund.source(balance=1_000_000)
    request_id = await fund.submitted(100_000)
    approved = await fund.approve(request_id)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["disbursement"]["status"] == "pending"
    line = await fund.line(source["id"])
    assert (line["available_minor"], line["reserved_minor"]) == (900_000, 100_000)


async def test_the_submitter_cannot_approve_their_own_request(fund: Fund) -> None:
    source = await fund.source(balance=1_000_000)
    response = await fund.submit(await fund.case(), 100_000, actor="officer")
    assert response.status_code == 201
    request_id = response.json()["id"]
    own = await fund.approve(request_id, "officer")
    assert own.status_code == 403
    assert "Maker-checker" in own.json()["detail"]
    assert (await fund.line(source["id"]))["reserved_minor"] == 0
    assert (await fund.approve(request_id, "officer2")).status_code == 200


async def test_a_rejected_request_cannot_be_approved(fund: Fund) -> None:
    source = await fund.source(balance=1_000_000)
    request_id = await fund.submitted(100_000)
    assert (await fund.reject(request_id, reason="not eligible")).status_code == 200
    again = await fund.approve(request_id, "officer2")
    assert again.status_code == 409
    assert again.json()["status"] == "rejected"
    assert (await fund.line(source["id"]))["reserved_minor"] == 0


async def test_approval_fails_clearly_when_no_line_can_cover_it(fund: Fund) -> None:
    source = await fund.source(balance=50_000)
    request_id = await fund.submitted(100_000)
    refused = await fund.approve(request_id)
    assert refused.status_code == 409
    assert refused.json()["needed_minor"] == 100_000
    line = await fund.line(source["id"])
    assert (line["available_minor"], line["reserved_minor"]) == (50_000, 0)
    status = await fund.client.get(
        f"/api/v1/fund/requests/{request_id}", headers=fund.as_("officer")
    )
    assert status.json()["status"] == "pending"


async def test_an_earmarked_donor_line_pays_before_the_state_budget(fund: Fund) -> None:
    state = await fund.source("state_budget", balance=1_000_000)
    donor = await fund.source("donor", balance=150_000)
    first = await fund.approve(await fund.submitted(100_000))
    assert first.json()["line_id"] == donor["lines"][0]["id"]
    second = await fund.approve(await fund.submitted(100_000))
    assert second.json()["line_id"] == state["lines"][0]["id"]


async def test_the_officer_may_choose_the_line(fund: Fund) -> None:
    state = await fund.source("state_budget", balance=1_000_000)
    await fund.source("donor", balance=1_000_000)
    line_id = state["lines"][0]["id"]
    chosen = await fund.approve(await fund.submitted(100_000), line_id=line_id)
    assert chosen.json()["line_id"] == line_id


async def test_a_line_for_another_purpose_cannot_be_chosen(fund: Fund) -> None:
    medical = await fund.source("donor", balance=1_000_000, purpose="medical")
    chosen = await fund.approve(await fund.submitted(100_000), line_id=medical["lines"][0]["id"])
    assert chosen.status_code == 422


async def test_above_the_threshold_an_officer_cannot_approve(fund: Fund) -> None:
    await fund.source(balance=1_000_000)
    request_id = await fund.submitted(300_000)
    response = await fund.approve(request_id)
    assert response.status_code == 403
    assert "commission" in response.json()["detail"]


async def test_the_commission_needs_a_state_and_a_civil_society_vote(fund: Fund) -> None:
    source = await fund.source(balance=1_000_000)
    request_id = await fund.submitted(300_000)
    for member in ("member_state", "member_state2"):
        voted = await fund.approve(request_id, member)
        assert voted.status_code == 200, voted.text
        assert voted.json()["status"] == "pending"
    assert (await fund.line(source["id"]))["reserved_minor"] == 0
    decided = await fund.approve(request_id, "member_ngo")
    assert decided.json()["status"] == "approved"
    assert [v["sector"] for v in decided.json()["votes"]] == ["state", "state", "civil_society"]
    assert (await fund.line(source["id"]))["reserved_minor"] == 300_000


async def test_two_votes_from_both_sectors_make_the_default_quorum(fund: Fund) -> None:
    await fund.source(balance=1_000_000)
    request_id = await fund.submitted(300_000)
    assert (await fund.approve(request_id, "member_ngo")).json()["status"] == "pending"
    assert (await fund.approve(request_id, "member_state")).json()["status"] == "approved"


async def test_a_member_votes_only_once(fund: Fund) -> None:
    request_id = await fund.submitted(300_000)
    assert (await fund.approve(request_id, "member_state")).status_code == 200
    again = await fund.approve(request_id, "member_state")
    assert again.status_code == 409
    assert "already voted" in again.json()["detail"]


async def test_one_commission_rejection_with_a_reason_stops_the_request(fund: Fund) -> None:
    await fund.source(balance=1_000_000)
    request_id = await fund.submitted(300_000)
    assert (await fund.approve(request_id, "member_state")).status_code == 200
    rejected = await fund.reject(request_id, "member_ngo", reason="already helped by IOM")
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["rejection_reason"] == "already helped by IOM"
    assert (await fund.approve(request_id, "member_state2")).status_code == 409
    no_reason = await fund.client.post(
        f"/api/v1/fund/requests/{await fund.submitted(300_000)}/reject",
        json={},
        headers=fund.as_("member_ngo"),
    )
    assert no_reason.status_code == 422


async def test_a_vote_from_an_organisation_of_unknown_sector_is_refused(fund: Fund) -> None:
    request_id = await fund.submitted(300_000)
    response = await fund.approve(request_id, "member_unknown")
    assert response.status_code == 422
    assert "sector" in response.json()["detail"]
    status = await fund.client.get(
        f"/api/v1/fund/requests/{request_id}", headers=fund.as_("officer")
    )
    assert status.json()["votes"] == []


async def test_an_approval_needs_no_body(fund: Fund) -> None:
    await fund.source(balance=1_000_000)
    request_id = await fund.submitted(100_000)
    response = await fund.client.post(
        f"/api/v1/fund/requests/{request_id}/approve", headers=fund.as_("officer")
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "approved"
