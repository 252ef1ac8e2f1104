"""Personal data is sealed at rest, never in events or logs, and gone after erasure."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from gateway.keys import SigningKeys
from nrm.bus import InMemoryBus
from nrm.runner import intake_maintenance, migrate
from nrm.settings import Settings
from services.intake import crypto
from services.intake.app import create_app
from services.intake.models import Case
from tests.intake.conftest import CASES, SECRET_NAME, SECRETS, Intake, case_body, running_intake
from tests.support import PostgresDatabases, bearer, runtime_for, serving


async def test_the_database_file_holds_no_clear_personal_data(intake: Intake) -> None:
    await intake.register()
    # The main file and its write-ahead log: together they are everything on disk.
    files = Path(intake.settings.data_dir).glob("intake.db*")  # noqa: ASYNC240 (a test's scan)
    raw = b"".join(path.read_bytes() for path in files)
    assert b"police-dushanbe" in raw, "the scan must see the rows"
    for secret in SECRETS:
        assert secret.encode() not in raw, f"{secret!r} stored in clear"


@pytest.mark.postgres
async def test_postgresql_rows_hold_no_clear_personal_data(
    tmp_path: Path, postgres: PostgresDatabases, signing_keys: SigningKeys
) -> None:
    url = await postgres.create("intake")
    async with running_intake(
        Settings(data_dir=tmp_path, intake_database_url=url), signing_keys
    ) as pg:
        answer = await pg.http.post(CASES, json=case_body(), headers=pg.police)
        assert answer.status_code == 201
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        dump = ""
        for row in tables:
            rows = await connection.fetch(f'SELECT * FROM "{row["tablename"]}"')  # noqa: S608
            dump += repr([dict(r) for r in rows])
    finally:
        await connection.close()
    assert "police-dushanbe" in dump, "the dump must see the rows"
    for secret in SECRETS:
        assert secret not in dump, f"{secret!r} stored in clear"


async def test_no_personal_data_in_any_event_or_log_line(
    intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    case_id = await intake.register()
    await intake.http.patch(
        f"{CASES}/{case_id}", json={"needs": ["shelter"]}, headers=intake.police
    )
    await intake.http.post(
        f"{CASES}/{case_id}/close", json={"reason": "assisted"}, headers=intake.police
    )

    async def all_three() -> bool | None:
        return True if len(intake.published) >= 3 else None

    from tests.support import eventually

    await eventually(all_three)
    messages = b"".join(delivery.body for delivery in intake.published)
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert b"nrm.intake.case.registered.v1" in messages
    for secret in SECRETS:
        assert secret.encode() not in messages, f"{secret!r} in an event"
        assert secret not in logs, f"{secret!r} in a log line"


async def test_erasure_makes_the_data_unreadable_and_says_so_on_the_bus(intake: Intake) -> None:
    case_id = await intake.register()
    async with intake.db.transaction() as session:
        before = await session.get(Case, case_id)
        assert before is not None
        assert before.sealed is not None
        assert before.wrapped_key is not None

    admin = intake.as_("nrm-operator", "admin")
    erased = await intake.http.delete(f"{CASES}/{case_id}?reason=person_request", headers=admin)

    assert erased.status_code == 204
    async with intake.db.transaction() as session:
        tombstone = await session.get(Case, case_id)
    assert tombstone is not None
    assert tombstone.status == "erased"
    assert tombstone.sealed is None
    assert tombstone.wrapped_key is None
    assert tombstone.name_index is None
    owner_view = await intake.http.get(f"{CASES}/{case_id}", headers=intake.police)
    assert owner_view.json()["person"] == {}
    again = await intake.http.delete(f"{CASES}/{case_id}?reason=person_request", headers=admin)
    assert again.status_code == 404

    from tests.support import eventually

    async def erased_event() -> bool | None:
        types = [d.routing_key for d in intake.published]
        return True if "nrm.intake.case.erased.v1" in types else None

    await eventually(erased_event)


async def test_master_key_rotation_keeps_old_cases_readable_and_rewrap_moves_them(
    intake: Intake,
) -> None:
    old_case = await intake.register()
    keyring_file = intake.settings.data_dir / "keys" / crypto.DEV_KEYRING_FILE
    new_kid = crypto.rotate_dev_keyring(keyring_file)
    # The running app reloads its keyring as a restart would.
    intake.http._transport.app.state.keyring = crypto.load_keyring(intake.settings, None, None)  # type: ignore[attr-defined]
    new_case = await intake.register()

    async with intake.db.transaction() as session:
        old, new = await session.get(Case, old_case), await session.get(Case, new_case)
    assert old is not None
    assert new is not None
    assert new.key_id == new_kid
    assert old.key_id != new_kid
    old_view = await intake.http.get(f"{CASES}/{old_case}", headers=intake.police)
    assert old_view.json()["person"]["given_name"] == SECRET_NAME

    assert await intake_maintenance(intake.settings, "rewrap") == 0
    async with intake.db.transaction() as session:
        moved = await session.get(Case, old_case)
    assert moved is not None
    assert moved.key_id == new_kid
    reread = await intake.http.get(f"{CASES}/{old_case}", headers=intake.police)
    assert reread.json()["person"]["given_name"] == SECRET_NAME


async def test_duplicates_are_found_by_blind_index_without_showing_another_orgs_case(
    intake: Intake,
) -> None:
    first = await intake.register()
    same_person = case_body()
    # The same name written differently, no phone: still the same person.
    written_otherwise = {"given_name": f"{SECRET_NAME.upper()} ", "phone": None}
    same_person["person"] = same_person["person"] | written_otherwise
    ngo = intake.as_("ngo-migrant-support", "intake_officer")
    theirs = await intake.http.post(CASES, json=same_person, headers=ngo)
    mine_again = await intake.register()

    matches = (await intake.http.get(f"{CASES}/{first}/duplicates", headers=intake.police)).json()

    by_org = {(m["org_id"], m["match"]): m["case_id"] for m in matches}
    assert by_org[("ngo-migrant-support", "name_and_birth_date")] is None
    assert by_org[("police-dushanbe", "name_and_birth_date")] == mine_again
    assert theirs.json()["id"] not in str(matches)


@pytest.mark.postgres
async def test_concurrent_retries_with_one_idempotency_key_register_one_case(
    tmp_path: Path, postgres: PostgresDatabases, signing_keys: SigningKeys
) -> None:
    settings = Settings(data_dir=tmp_path, intake_database_url=await postgres.create("intake"))
    await migrate(settings, ["intake"])
    bus = InMemoryBus()
    await bus.connect()
    app = create_app(runtime_for(settings, bus, signing_keys))
    headers = bearer(signing_keys, settings, roles=["intake_officer"], org="police-dushanbe")
    headers["Idempotency-Key"] = "submit-once"
    async with serving(app) as http:
        answers = await asyncio.gather(
            *(http.post(CASES, json=case_body(), headers=headers) for _ in range(10))
        )
        async with app.state.db.transaction() as session:
            count = (await session.exec(text("SELECT count(*) FROM cases"))).one()[0]
        replay = await http.post(CASES, json=case_body(), headers=headers)
    await bus.close()

    assert count == 1
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {201, 409}
    created = [a.json()["id"] for a in answers if a.status_code == 201]
    assert len(set(created)) == 1
    assert replay.json()["id"] == created[0]
