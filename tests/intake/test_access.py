"""The access matrix: who sees what of a case, on every intake endpoint."""

from __future__ import annotations

import pytest

from tests.intake.conftest import (
    CASES,
    SECRET_DOCUMENT,
    SECRET_FAMILY,
    SECRET_NAME,
    SECRET_NARRATIVE,
    Intake,
)

SHELTER = ("shelter-khujand", "provider")
MEDICAL = ("hospital-dushanbe", "provider")
LEGAL = ("legal-aid-dushanbe", "provider")
UNRELATED = ("ngo-migrant-support", "intake_officer")
AUDITOR = ("ombudsman", "auditor")


async def test_a_shelter_with_an_accepted_referral_sees_only_what_a_shelter_needs(
    intake: Intake,
) -> None:
    case_id = await intake.register()
    await intake.referral_accepted(case_id, "shelter-khujand", "shelter")

    view = (await intake.http.get(f"{CASES}/{case_id}", headers=intake.as_(*SHELTER))).json()

    assert view["projection"] == "shelter"
    assert view["person"] == {
        "given_name": SECRET_NAME,
        "gender": "female",
        "languages": ["tg", "ru"],
        "age_band": "25-34",
    }
    assert view["situation"] is None
    assert set(view["flags"]) == {"immediate_danger"}
    assert view["consents"] == []


async def test_medical_sees_medical_flags_and_legal_aid_the_facts_of_the_case(
    intake: Intake,
) -> None:
    case_id = await intake.register()
    await intake.referral_accepted(case_id, "hospital-dushanbe", "medical")
    await intake.referral_accepted(case_id, "legal-aid-dushanbe", "legal_aid")

    medical = (await intake.http.get(f"{CASES}/{case_id}", headers=intake.as_(*MEDICAL))).json()
    legal = (await intake.http.get(f"{CASES}/{case_id}", headers=intake.as_(*LEGAL))).json()

    assert medical["projection"] == "medical"
    assert {"injured", "pregnant", "disability"} <= set(medical["flags"])
    assert medical["situation"] is None
    assert SECRET_FAMILY not in str(medical)
    assert legal["projection"] == "legal"
    assert legal["person"]["family_name"] == SECRET_FAMILY
    assert legal["person"]["document"]["number"] == SECRET_DOCUMENT
    assert legal["situation"]["narrative"] == SECRET_NARRATIVE


async def test_auditors_see_metadata_and_the_log_but_no_personal_data(intake: Intake) -> None:
    case_id = await intake.register()
    view = await intake.http.get(f"{CASES}/{case_id}", headers=intake.as_(*AUDITOR))
    log = await intake.http.get(f"{CASES}/{case_id}/access-log", headers=intake.as_(*AUDITOR))
    assert view.json()["projection"] == "auditor"
    assert view.json()["person"] is None
    for secret in (SECRET_NAME, SECRET_FAMILY, SECRET_DOCUMENT, SECRET_NARRATIVE):
        assert secret not in view.text
    assert log.status_code == 200


async def test_withdrawn_consent_ends_the_referred_organisations_view_at_once(
    intake: Intake,
) -> None:
    case_id = await intake.register()
    await intake.referral_accepted(case_id, "shelter-khujand", "shelter")
    consent_id = (await intake.http.get(f"{CASES}/{case_id}", headers=intake.police)).json()[
        "consents"
    ][0]["id"]

    withdrawn = await intake.http.post(
        f"{CASES}/{case_id}/consents/{consent_id}/withdraw", headers=intake.police
    )

    assert withdrawn.status_code == 200
    assert withdrawn.json()["withdrawn_at"]
    after = await intake.http.get(f"{CASES}/{case_id}", headers=intake.as_(*SHELTER))
    assert after.status_code == 404
    types = [delivery.routing_key for delivery in intake.published]
    assert "nrm.intake.consent.withdrawn.v1" in types or await _eventually_published(
        intake, "nrm.intake.consent.withdrawn.v1"
    )


async def _eventually_published(intake: Intake, event_type: str) -> bool:
    from tests.support import eventually

    async def seen() -> bool | None:
        return True if any(d.routing_key == event_type for d in intake.published) else None

    return await eventually(seen)


ENDPOINTS = [
    ("GET", "{case}", None),
    ("PATCH", "{case}", {"needs": ["shelter"]}),
    ("POST", "{case}/consents", {"scopes": ["statistics"], "method": "written", "language": "ru"}),
    ("POST", "{case}/close", {"reason": "assisted"}),
    ("GET", "{case}/access-log", None),
    ("GET", "{case}/duplicates", None),
    ("DELETE", "{case}?reason=person_request", None),
]

# Who gets what, per endpoint (same order as ENDPOINTS).
EXPECTED = {
    "owner": [200, 200, 201, 200, 200, 200, 403],
    "referred shelter": [200, 403, 403, 403, 404, 404, 403],
    "unrelated": [404, 404, 404, 404, 404, 404, 403],
    "auditor": [200, 403, 403, 403, 200, 404, 403],
    "admin": [404, 403, 403, 403, 404, 404, 204],
    "no token": [401, 401, 401, 401, 401, 401, 401],
}
CALLERS = {
    "owner": ("police-dushanbe", "intake_officer"),
    "referred shelter": SHELTER,
    "unrelated": UNRELATED,
    "auditor": AUDITOR,
    "admin": ("nrm-operator", "admin"),
}


@pytest.mark.parametrize("caller", list(EXPECTED))
async def test_access_matrix_for_every_intake_endpoint(intake: Intake, caller: str) -> None:
    answers = []
    for method, path, body in ENDPOINTS:
        case_id = await intake.register()
        await intake.referral_accepted(case_id, "shelter-khujand", "shelter")
        headers = intake.as_(*CALLERS[caller]) if caller in CALLERS else {}
        url = f"{CASES}/" + path.format(case=case_id)
        answer = await intake.http.request(method, url, json=body, headers=headers)
        answers.append(answer.status_code)
        if answer.status_code >= 400:
            assert answer.headers["content-type"] == "application/problem+json"
    assert answers == EXPECTED[caller]


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("owner", 201),
        ("referred shelter", 403),
        ("unrelated", 201),  # any intake officer registers for their own organisation
        ("auditor", 403),
        ("admin", 403),
        ("no token", 401),
    ],
)
async def test_who_may_register_a_case(intake: Intake, caller: str, expected: int) -> None:
    from tests.intake.conftest import case_body

    headers = intake.as_(*CALLERS[caller]) if caller in CALLERS else {}
    answer = await intake.http.post(CASES, json=case_body(), headers=headers)
    assert answer.status_code == expected


@pytest.mark.parametrize(
    ("caller", "sees"),
    [
        ("owner", True),
        ("referred shelter", True),
        ("unrelated", False),
        ("auditor", True),
        ("admin", False),
    ],
)
async def test_lists_show_only_cases_the_caller_may_see(
    intake: Intake, caller: str, sees: bool
) -> None:
    case_id = await intake.register()
    await intake.referral_accepted(case_id, "shelter-khujand", "shelter")
    listed = await intake.http.get(CASES, headers=intake.as_(*CALLERS[caller]))
    assert listed.status_code == 200
    assert (case_id in listed.text) is sees
    assert SECRET_NAME not in listed.text


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("owner", 200),
        ("referred shelter", 403),
        ("unrelated", 404),
        ("auditor", 403),
        ("admin", 403),
        ("no token", 401),
    ],
)
async def test_who_may_withdraw_consent(intake: Intake, caller: str, expected: int) -> None:
    case_id = await intake.register()
    await intake.referral_accepted(case_id, "shelter-khujand", "shelter")
    view = (await intake.http.get(f"{CASES}/{case_id}", headers=intake.police)).json()
    consent_id = view["consents"][0]["id"]
    headers = intake.as_(*CALLERS[caller]) if caller in CALLERS else {}
    answer = await intake.http.post(
        f"{CASES}/{case_id}/consents/{consent_id}/withdraw", headers=headers
    )
    assert answer.status_code == expected
