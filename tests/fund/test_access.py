"""Who may do what, endpoint by endpoint. Not visible is 404; wrong role 403; no token 401."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fund.conftest import REQUESTS, SOURCES, Fund

# ruff: noqa: E501 (the matrix reads best one endpoint per line)

ANONYMOUS = "anonymous"
EVERYONE = ("officer", "member_state", "auditor", "requester", "other_org", ANONYMOUS)


async def _world(fund: Fund) -> dict[str, str]:
    source = await fund.source(balance=1_000_000)
    request_id = await fund.submitted(100_000)
    approved_id = await fund.submitted(100_000)
    assert (await fund.approve(approved_id)).status_code == 200
    return {"source": source["id"], "request": request_id, "approved": approved_id}


def _allocation() -> dict[str, Any]:
    return {
        "purpose": "return_travel",
        "amount_minor": 100,
        "reference": "r",
        "value_date": "2026-11-01",
    }


# (method, path, body, {actor: expected status}); the last actor listed may change state.
MATRIX: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", SOURCES, None, {"officer": 200, "member_state": 200, "auditor": 200, "requester": 403, "other_org": 403, ANONYMOUS: 401}),
    ("POST", SOURCES, {"kind": "donor", "name": "d"}, {"member_state": 403, "auditor": 403, "requester": 403, "other_org": 403, ANONYMOUS: 401, "officer": 201}),
    ("POST", SOURCES + "/{source}/allocations", _allocation(), {"member_state": 403, "auditor": 403, "requester": 403, "other_org": 403, ANONYMOUS: 401, "officer": 201}),
    ("GET", "/api/v1/fund/ledger", None, {"officer": 200, "auditor": 200, "member_state": 403, "requester": 403, "other_org": 403, ANONYMOUS: 401}),
    ("GET", "/api/v1/fund/reports/balances", None, {"officer": 200, "member_state": 200, "auditor": 200, "requester": 403, "other_org": 403, ANONYMOUS: 401}),
    ("GET", REQUESTS, None, {"officer": 200, "member_state": 200, "auditor": 200, "requester": 200, "other_org": 200, ANONYMOUS: 401}),
    ("GET", REQUESTS + "/{request}", None, {"officer": 200, "member_state": 200, "auditor": 200, "requester": 200, "other_org": 404, ANONYMOUS: 401}),
    ("POST", REQUESTS + "/{request}/approve", {}, {"member_state": 403, "auditor": 403, "requester": 403, "other_org": 403, ANONYMOUS: 401, "officer": 200}),
    ("POST", REQUESTS + "/{request}/reject", {"reason": "r"}, {"member_state": 403, "auditor": 403, "requester": 403, "other_org": 403, ANONYMOUS: 401, "officer": 200}),
    ("POST", REQUESTS + "/{approved}/cash-handover", {"receipt_number": "1"}, {"member_state": 403, "auditor": 403, "requester": 403, "other_org": 403, ANONYMOUS: 401, "officer": 200}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX)
async def test_each_endpoint_answers_each_role_as_the_matrix_says(
    fund: Fund, method: str, path: str, body: Any, expected: dict[str, int]
) -> None:
    assert set(expected) == set(EVERYONE)
    url = path.format(**await _world(fund))
    for actor, status in expected.items():
        headers = {} if actor == ANONYMOUS else fund.as_(actor)
        response = await fund.client.request(method, url, json=body, headers=headers)
        assert response.status_code == status, (actor, response.text)


async def test_submitting_is_for_requesting_roles(fund: Fund) -> None:
    case_id = await fund.case()
    for actor, status in (
        ("member_state", 403),
        ("auditor", 403),
        ("officer", 201),
        ("requester", 201),
    ):
        assert (await fund.submit(case_id, 1_000, actor=actor)).status_code == status, actor
    anonymous = await fund.client.post(REQUESTS, json=fund.request_body(case_id, 1_000))
    assert anonymous.status_code == 401


async def test_an_organisation_lists_only_its_own_requests(fund: Fund) -> None:
    mine = await fund.submitted(1_000)
    their_case = await fund.case(org="shelter-khujand")
    answer = await fund.submit(their_case, 1_000, actor="other_org")
    assert answer.status_code == 201, answer.text
    theirs = answer.json()["id"]
    for actor, visible in (
        ("requester", {mine}),
        ("other_org", {theirs}),
        ("auditor", {mine, theirs}),
        ("member_state", {mine, theirs}),
    ):
        listed = await fund.client.get(REQUESTS, headers=fund.as_(actor))
        assert {item["id"] for item in listed.json()["items"]} == visible, actor


async def test_another_organisations_case_is_unknown_to_a_requester(fund: Fund) -> None:
    police_case = await fund.case(org="police-dushanbe")
    answer = await fund.submit(police_case, 1_000, actor="other_org")
    missing = await fund.submit("00000000-0000-4000-8000-000000000000", 1_000, actor="other_org")
    assert answer.status_code == missing.status_code == 404
    assert answer.json()["detail"] == missing.json()["detail"]
