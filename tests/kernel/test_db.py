"""New rows built cheaply and written together; commits that need not wait for the disk."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import JSON, event, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, func, select

from nrm.clock import as_utc
from nrm.db import Database, commit_without_waiting_for_disk, new_row, write_new
from nrm.settings import Settings
from services.intake.models import AccessLog, Case, Consent
from tests.support import SQLITE_AND_POSTGRES, PostgresDatabases, database_of, migrated_database

AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(params=SQLITE_AND_POSTGRES)
async def db(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Database]:
    async with database_of(request, settings, "intake") as database:
        yield database


def _case(case_id: str) -> Case:
    return Case(
        id=case_id,
        org_id="org-a",
        created_by="officer",
        case_type="vulnerable_migrant",
        channel="hotline",
        urgency="normal",
        urgency_rule="default",
        sensitivity=[],
        needs=["shelter"],
        gender="unknown",
        age_band="unknown",
        is_child=False,
        flags={},
        situation_codes={},
    )


def _consent(case_id: str) -> Consent:
    return Consent(
        id=str(uuid.uuid4()),
        case_id=case_id,
        scopes=["assistance"],
        method="verbal",
        language="tg",
        recorded_by="officer",
        recorded_at=AT,
    )


def _entry(case_id: str) -> AccessLog:
    return AccessLog(
        case_id=case_id,
        seq=1,
        actor="officer",
        org_id="org-a",
        action="register",
        projection="owner",
        at=AT,
        prev_hash="",
        hash="0" * 64,
    )


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(*args: object) -> None:
        seen.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", note)


async def _count(db: Database, model: type[Case] | type[Consent] | type[AccessLog]) -> int:
    async with db.transaction() as session:
        return (await session.exec(select(func.count()).select_from(model))).one()


async def test_new_rows_are_written_once_and_stay_in_the_unit_of_work(db: Database) -> None:
    case_id = str(uuid.uuid4())
    with statements(db) as sent:
        async with db.transaction() as session:
            case = _case(case_id)
            # Children first on purpose: the order they were added in does not matter.
            session.add(_entry(case_id))
            session.add(_consent(case_id))
            session.add(case)
            await write_new(session)
            inserts = [s for s in sent if "INSERT" in s]
            case.status = "closed"  # persistent: saved as an UPDATE at the commit

    if db.is_postgres:
        assert len(inserts) == 1, "one statement for the three rows"
    else:
        assert len(inserts) == 3
    assert not [s for s in sent[len(inserts) :] if "INSERT" in s], "nothing written twice"
    assert any(s.startswith("UPDATE cases") for s in sent)
    async with db.transaction() as session:
        stored = await session.get(Case, case_id)
        assert stored is not None
        assert stored.status == "closed"
    assert (await _count(db, Consent), await _count(db, AccessLog)) == (1, 1)


async def _write(db: Database, *rows: Case | Consent, fail: bool = False) -> None:
    async with db.transaction() as session:
        for row in rows:
            session.add(row)
        await write_new(session)
        if fail:
            raise RuntimeError("the request failed after writing")


async def test_a_failing_row_writes_none_of_them(db: Database) -> None:
    case_id = str(uuid.uuid4())
    await _write(db, _case(case_id))
    with pytest.raises(IntegrityError):
        await _write(db, _consent(case_id), _case(case_id))  # the same case id again
    assert (await _count(db, Case), await _count(db, Consent)) == (1, 0)


async def test_rows_written_together_are_undone_with_their_transaction(db: Database) -> None:
    case_id = str(uuid.uuid4())
    case, consent = _case(case_id), _consent(case_id)
    with pytest.raises(RuntimeError):
        await _write(db, case, consent, fail=True)
    assert (await _count(db, Case), await _count(db, Consent)) == (0, 0)
    # As after a flush that is rolled back: new again, not mistaken for stored rows.
    assert _transient(case)
    assert _transient(consent)


@pytest.mark.postgres
async def test_only_the_chosen_transaction_commits_without_waiting_for_the_disk(
    postgres: PostgresDatabases,
) -> None:
    db = await migrated_database(await postgres.create("intake"), "intake")
    show = text("SHOW synchronous_commit")
    async with db.engine.begin() as connection:
        await commit_without_waiting_for_disk(connection)
        assert (await connection.execute(show)).scalar_one() == "off"
    async with db.engine.connect() as connection:
        after = (await connection.execute(show)).scalar_one()
    assert after == "on", "SET LOCAL: the pooled connection is back to the default"
    await db.dispose()


async def test_with_changes_pending_the_rows_go_in_order_with_them(db: Database) -> None:
    """A flush orders pending changes with the inserts; so write_new leaves it to one."""
    case_id = str(uuid.uuid4())
    await _write(db, _case(case_id))
    with statements(db) as sent:
        async with db.transaction() as session:
            case = await session.get(Case, case_id)
            assert case is not None
            case.status = "closed"
            session.add(_consent(case_id))
            await write_new(session)
    writes = [s.split()[0] for s in sent if s.startswith(("INSERT", "UPDATE", "WITH"))]
    assert writes == ["UPDATE", "INSERT"]


async def test_rows_written_together_read_back_as_written(db: Database) -> None:
    case_id = str(uuid.uuid4())
    case = _case(case_id)
    case.flags = {"pregnant": True, "injured": False}
    case.needs = ["shelter", "medical"]
    case.situation_codes = {"exploitation_types": ["labour"], "sector": None}
    case.sealed, case.wrapped_key = b"\x00\x01sealed\xff", b"\x02wrapped"
    case.region, case.is_child, case.log_seq = "TJ-SU", True, 3
    written = _columns(case)
    await _write(db, case)
    async with db.transaction() as session:
        stored = await session.get(Case, case_id)
    assert stored is not None
    assert _columns(stored) == written


def _columns(case: Case) -> dict[str, object]:
    # SQLite gives times back without their zone (nrm.clock.as_utc puts UTC back).
    return {
        column: as_utc(value) if isinstance(value, datetime) else value
        for column in Case.model_fields
        for value in [getattr(case, column)]
    }


def _case_values(case_id: str) -> dict[str, Any]:
    """What `_case` gives the constructor."""
    case = _case(case_id)
    return {name: getattr(case, name) for name in case.model_fields_set}


def _transient(row: object) -> bool:
    state = inspect(row)
    assert state is not None
    return bool(state.transient)


def test_a_new_row_is_what_the_constructor_makes() -> None:
    values = _case_values(str(uuid.uuid4()))
    built, made = new_row(Case, **values), Case(**values)
    times = {"created_at", "updated_at"}  # each from its own call of the default factory
    assert built.model_dump(exclude=times) == made.model_dump(exclude=times)
    assert built.created_at.tzinfo is not None
    assert built.model_fields_set == made.model_fields_set == set(values)
    assert _transient(built)


class _Apart(SQLModel, registry=registry()):
    """Tables of their own registry, out of every database's metadata."""


class _Tagged(_Apart, table=True):
    """A mutable default: no real table has one yet."""

    id: str = Field(primary_key=True)
    tags: list[str] = Field(default=[], sa_type=JSON)


def test_a_new_rows_defaults_are_its_own() -> None:
    assert new_row(Case, **_case_values("c")).status == "open"
    first, second = new_row(_Tagged, id="a"), new_row(_Tagged, id="b")
    first.tags.append("changed")
    assert second.tags == [] == _Tagged(id="c").tags


def test_a_new_row_refuses_a_missing_or_unknown_field() -> None:
    values = _case_values("a")
    del values["org_id"]
    with pytest.raises(TypeError, match="org_id"):
        new_row(Case, **values)
    with pytest.raises(TypeError, match="nickname"):
        new_row(Case, **_case_values("a"), nickname="x")


async def test_new_rows_are_stored_as_constructed_ones_are(db: Database) -> None:
    case_id = str(uuid.uuid4())
    built = new_row(Case, **_case_values(case_id))
    await _write(db, built)
    async with db.transaction() as session:
        stored = await session.get(Case, case_id)
        assert stored is not None
        assert _columns(stored) == _columns(built)
        # and through a plain flush, which reads the same instance state
        other = new_row(Case, **_case_values(str(uuid.uuid4())))
        session.add(other)
        await session.flush()
    assert await _count(db, Case) == 2
