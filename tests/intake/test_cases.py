"""Registering and reading cases; bad input changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import func, select

from services.intake.models import Case
from tests.intake.conftest import CASES, SECRET_NAME, SECRET_NARRATIVE, Intake, case_body


async def _count(intake: Intake) -> int:
    async with intake.db.transaction() as session:
        return (await session.exec(select(func.count()).select_from(Case))).one()


async def test_registration_triages_and_answers_without_personal_data(intake: Intake) -> None:
    answer = await intake.http.post(
        CASES,
        json=case_body(flags={"immediate_danger": True}),
        headers=intake.police | {"Idempotency-Key": "reg-1"},
    )
    assert answer.status_code == 201, answer.text
    summary = answer.json()
    assert summary["urgency"] == "critical"
    assert summary["urgency_rule"] == "immediate_danger"
    assert "immediate_danger" in summary["sensitivity"]
    assert summary["region"] == "TJ-SU"
    assert SECRET_NAME not in answer.text


async def test_the_registering_organisation_reads_everything(intake: Intake) -> None:
    case_id = await intake.register()
    answer = await intake.http.get(f"{CASES}/{case_id}", headers=intake.police)
    assert answer.status_code == 200
    view = answer.json()
    assert view["projection"] == "owner"
    assert view["person"]["given_name"] == SECRET_NAME
    assert view["person"]["age_band"] == "25-34"
    assert view["situation"]["narrative"] == SECRET_NARRATIVE
    assert view["consents"][0]["scopes"][0] == "assistance"


def _person(**changes: Any) -> dict[str, Any]:
    return case_body()["person"] | changes  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"person": _person(birth_date="2999-01-01")}, "person"),
        ({"person": _person(citizenship="XX")}, "citizenship"),
        ({"person": _person(languages=["zz"])}, "languages"),
        ({"person": _person(location={"region": "TJ-ZZ"})}, "region"),
        ({"person": _person(birth_date="2015-01-01"), "is_child": False}, "is_child"),
        ({"needs": ["spa_weekend"]}, "needs"),
        ({"case_type": "burglary"}, "case_type"),
        ({"situation": {"narrative": "x" * 10_001}}, "narrative"),
        ({"situation": {"ilo_indicators": ["bad_vibes"]}}, "ilo_indicators"),
        ({"consent": {"scopes": ["referral:spa"], "method": "verbal", "language": "tg"}}, "scopes"),
        ({"flags": {"injured": "very"}}, "injured"),
        ({"person": _person(estimated_age=300)}, "estimated_age"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    intake: Intake, overrides: dict[str, Any], field: str
) -> None:
    answer = await intake.http.post(CASES, json=case_body(**overrides), headers=intake.police)

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    locations = json.dumps([error["loc"] for error in answer.json()["errors"]])
    assert field in locations or field in answer.text
    assert SECRET_NAME not in answer.text
    assert await _count(intake) == 0


async def test_a_child_is_recognised_from_the_birth_date(intake: Intake) -> None:
    case_id = await intake.register(
        person=_person(birth_date="2012-06-01"), case_type="vulnerable_migrant"
    )
    view = (await intake.http.get(f"{CASES}/{case_id}", headers=intake.police)).json()
    assert view["urgency"] == "high"
    assert "child" in view["sensitivity"]


async def test_update_retriages_and_an_override_keeps_its_reason_logged(intake: Intake) -> None:
    case_id = await intake.register(case_type="labour_complaint", situation={}, needs=[])
    url = f"{CASES}/{case_id}"
    assert (await intake.http.get(url, headers=intake.police)).json()["urgency"] == "low"

    pregnant = await intake.http.patch(
        url, json={"flags": {"pregnant": True}}, headers=intake.police
    )
    assert pregnant.json()["urgency"] == "high"
    assert pregnant.json()["urgency_rule"] == "pregnant"

    override = await intake.http.patch(
        url,
        json={"urgency_override": {"urgency": "critical", "reason": "threatened by the recruiter"}},
        headers=intake.police,
    )
    assert override.json()["urgency"] == "critical"
    assert override.json()["urgency_rule"] == "officer_override"
    log = (await intake.http.get(f"{url}/access-log", headers=intake.police)).json()
    assert [entry["action"] for entry in log][-1] == "triage_override"


async def test_lists_are_newest_first_paged_and_carry_no_personal_data(intake: Intake) -> None:
    ids = [await intake.register() for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = await intake.http.get(CASES, params=params, headers=intake.police)
        assert SECRET_NAME not in page.text
        seen += [item["id"] for item in page.json()["items"]]
        if (cursor := page.json()["next_cursor"]) is None:
            break
    assert seen == list(reversed(ids))
    other = await intake.http.get(
        CASES, headers=intake.as_("ngo-migrant-support", "intake_officer")
    )
    assert other.json()["items"] == []


async def test_closed_case_cannot_be_changed(intake: Intake) -> None:
    case_id = await intake.register()
    closed = await intake.http.post(
        f"{CASES}/{case_id}/close", json={"reason": "assisted"}, headers=intake.police
    )
    assert closed.json()["status"] == "closed"
    again = await intake.http.patch(
        f"{CASES}/{case_id}", json={"needs": ["shelter"]}, headers=intake.police
    )
    assert again.status_code == 409


async def test_an_update_flagging_a_child_as_adult_is_422_and_changes_nothing(
    intake: Intake,
) -> None:
    case_id = await intake.register(person=_person(birth_date="2012-06-01"))
    answer = await intake.http.patch(
        f"{CASES}/{case_id}", json={"is_child": False}, headers=intake.police
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    view = (await intake.http.get(f"{CASES}/{case_id}", headers=intake.police)).json()
    assert "child" in view["sensitivity"]
