"""The access log: every touch recorded, append-only, and tampering found."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from nrm.runner import intake_maintenance
from services.intake import accesslog
from tests.intake.conftest import CASES, Intake


async def test_every_read_and_change_is_logged_with_who_and_why(intake: Intake) -> None:
    case_id = await intake.register()
    await intake.referral_accepted(case_id, "shelter-khujand", "shelter")
    shelter = intake.as_("shelter-khujand", "provider", subject="shelter-worker-7")
    await intake.http.get(f"{CASES}/{case_id}", headers=shelter)
    await intake.http.get(
        f"{CASES}/{case_id}", headers=intake.police | {"X-Access-Reason": "legal_request"}
    )

    log = (await intake.http.get(f"{CASES}/{case_id}/access-log", headers=intake.police)).json()

    assert [(e["action"], e["org_id"], e["projection"]) for e in log] == [
        ("register", "police-dushanbe", "owner"),
        ("read", "shelter-khujand", "shelter"),
        ("read", "police-dushanbe", "owner"),
    ]
    assert log[1]["actor"] == "shelter-worker-7"
    assert log[2]["reason"] == "legal_request"


async def test_a_reason_in_words_is_refused_and_nothing_is_read(intake: Intake) -> None:
    # Free text would sit in clear in the log, before auditors: people write names in it.
    case_id = await intake.register()
    url = f"{CASES}/{case_id}"

    answer = await intake.http.get(
        url, headers=intake.police | {"X-Access-Reason": "asked by Farhod's sister"}
    )

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert "x-access-reason" in answer.text.lower()
    assert "Farhod" not in answer.text, "the refused value is not echoed"
    log = (await intake.http.get(f"{url}/access-log", headers=intake.police)).json()
    assert [entry["action"] for entry in log] == ["register"]


async def test_the_database_refuses_to_change_or_delete_log_rows(intake: Intake) -> None:
    await intake.register()
    for statement in ("UPDATE access_log SET actor = 'nobody'", "DELETE FROM access_log"):
        with pytest.raises(DatabaseError, match="append-only"):
            async with intake.db.transaction() as session:
                await session.exec(text(statement))  # type: ignore[call-overload]


async def test_verification_finds_the_first_tampered_entry(intake: Intake) -> None:
    case_id = await intake.register()
    for _ in range(3):
        await intake.http.get(f"{CASES}/{case_id}", headers=intake.police)
    assert await intake_maintenance(intake.settings, "verify-log") == 0

    # Someone with the database's own rights lifts the trigger and rewrites history.
    async with intake.db.transaction() as session:
        await session.exec(text("DROP TRIGGER access_log_no_update"))  # type: ignore[call-overload]
        await session.exec(
            text("UPDATE access_log SET org_id = 'ombudsman' WHERE seq = 3")  # type: ignore[call-overload]
        )

    async with intake.db.transaction() as session:
        broken = await accesslog.verify(session)
    assert broken is not None
    assert (broken.case_id, broken.seq) == (case_id, 3)
    assert await intake_maintenance(intake.settings, "verify-log") == 1


async def test_verification_sees_entries_cut_from_the_end(intake: Intake) -> None:
    case_id = await intake.register()
    await intake.http.get(f"{CASES}/{case_id}", headers=intake.police)
    async with intake.db.transaction() as session:
        await session.exec(text("DROP TRIGGER access_log_no_delete"))  # type: ignore[call-overload]
        await session.exec(text("DELETE FROM access_log WHERE seq = 2"))  # type: ignore[call-overload]
    async with intake.db.transaction() as session:
        broken = await accesslog.verify(session)
    assert broken is not None
    assert broken.problem == "entries after this point were removed"
