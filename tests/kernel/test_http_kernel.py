"""Idempotency-Key and problem+json, on a small app built like every service."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlmodel import func, select

from gateway.keys import SigningKeys
from nrm.app import ServiceDefinition, create_service_app
from nrm.auth import CurrentPrincipal
from nrm.bus import InMemoryBus
from nrm.db import Database, SessionDep
from nrm.errors import Invalid
from nrm.idempotency import IdempotencyRecord, RequiredIdempotencyDep
from nrm.outbox import OutboxMessage, record_event
from nrm.runner import migrate
from nrm.settings import Settings
from services.intake.events import DiagnosticPinged
from tests.support import bearer, runtime_for, serving

INTAKE_MIGRATIONS = Path(__file__).parents[2] / "services" / "intake" / "migrations"


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=50)
    delay: float = 0


class NoteOut(BaseModel):
    id: str
    text: str


router = APIRouter()


@router.post("/notes", status_code=201)
async def create_note(
    body: NoteIn, principal: CurrentPrincipal, session: SessionDep, key: RequiredIdempotencyDep
) -> NoteOut:
    await asyncio.sleep(body.delay)
    if body.text == "refuse":
        raise Invalid("This note is refused.")
    if body.text == "crash":
        raise RuntimeError("secret detail that must not leak")
    event_id = record_event(session, DiagnosticPinged(ping_id=uuid.uuid4(), org_id=principal.org))
    return await key.remember(session, NoteOut(id=event_id, text=body.text))


@pytest.fixture
async def client(
    settings: Settings, signing_keys: SigningKeys
) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    await migrate(settings, ["intake"])
    bus = InMemoryBus()
    await bus.connect()
    service = ServiceDefinition("intake", "test", INTAKE_MIGRATIONS, routers=[router])
    app = create_service_app(service, runtime_for(settings, bus, signing_keys))
    async with serving(app) as http:
        http.headers.update(bearer(signing_keys, settings, roles=["intake_officer"]))
        yield http, app.state.db
    await bus.close()


async def _effects(db: Database) -> int:
    async with db.transaction() as session:
        return (await session.exec(select(func.count()).select_from(OutboxMessage))).one()


NOTES = "/api/v1/intake/notes"


async def test_replay_with_the_same_body_returns_the_first_answer_and_changes_nothing(
    client: tuple[httpx.AsyncClient, Database],
) -> None:
    http, db = client
    first = await http.post(NOTES, json={"text": "a"}, headers={"Idempotency-Key": "k1"})
    again = await http.post(NOTES, json={"text": "a"}, headers={"Idempotency-Key": "k1"})

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await _effects(db) == 1


async def test_same_key_with_another_body_is_refused_with_422(
    client: tuple[httpx.AsyncClient, Database],
) -> None:
    http, db = client
    await http.post(NOTES, json={"text": "a"}, headers={"Idempotency-Key": "k2"})
    other = await http.post(NOTES, json={"text": "b"}, headers={"Idempotency-Key": "k2"})

    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert await _effects(db) == 1


async def test_same_key_while_the_first_is_running_gets_409(
    client: tuple[httpx.AsyncClient, Database],
) -> None:
    http, db = client
    body = {"text": "slow", "delay": 0.5}
    slow = asyncio.create_task(http.post(NOTES, json=body, headers={"Idempotency-Key": "k3"}))
    await asyncio.sleep(0.2)
    concurrent = await http.post(NOTES, json=body, headers={"Idempotency-Key": "k3"})

    assert concurrent.status_code == 409
    assert (await slow).status_code == 201
    assert await _effects(db) == 1


async def test_missing_key_where_required_is_400(
    client: tuple[httpx.AsyncClient, Database],
) -> None:
    http, db = client
    answer = await http.post(NOTES, json={"text": "a"})
    assert answer.status_code == 400
    assert "Idempotency-Key" in answer.json()["detail"]
    assert await _effects(db) == 0


async def test_a_refused_request_frees_its_key_for_a_corrected_retry(
    client: tuple[httpx.AsyncClient, Database],
) -> None:
    http, db = client
    refused = await http.post(NOTES, json={"text": "refuse"}, headers={"Idempotency-Key": "k4"})
    corrected = await http.post(NOTES, json={"text": "fine"}, headers={"Idempotency-Key": "k4"})
    assert refused.status_code == 422
    assert corrected.status_code == 201
    assert await _effects(db) == 1


@pytest.mark.parametrize("failing", [{"text": ""}, {"text": "crash"}], ids=["invalid", "crash"])
async def test_a_request_that_fails_frees_its_key(
    client: tuple[httpx.AsyncClient, Database], failing: dict[str, str]
) -> None:
    """A body the schema refuses, or an unexpected error: nothing was done, so the key
    is free for the retry (the claim was made before either surfaced)."""
    http, db = client
    failed = await http.post(NOTES, json=failing, headers={"Idempotency-Key": "k8"})
    retried = await http.post(NOTES, json={"text": "fine"}, headers={"Idempotency-Key": "k8"})
    assert failed.status_code in (422, 500)
    assert retried.status_code == 201
    assert await _effects(db) == 1


async def test_a_claim_whose_request_died_is_taken_over_after_its_lease(
    client: tuple[httpx.AsyncClient, Database], settings: Settings, signing_keys: SigningKeys
) -> None:
    http, db = client
    answer = await http.post(NOTES, json={"text": "a"}, headers={"Idempotency-Key": "k5"})
    async with db.transaction() as session:
        record = (await session.exec(select(IdempotencyRecord))).one()
        # As if the process had died mid-request: claimed, never completed, lease over.
        record.status_code = None
        record.response_body = None
        record.lease_until = datetime.now(UTC) - timedelta(seconds=1)
        session.add(record)
    retried = await http.post(NOTES, json={"text": "a"}, headers={"Idempotency-Key": "k5"})
    assert answer.status_code == retried.status_code == 201


async def test_keys_belong_to_the_caller(
    client: tuple[httpx.AsyncClient, Database], settings: Settings, signing_keys: SigningKeys
) -> None:
    http, db = client
    other = bearer(signing_keys, settings, roles=["intake_officer"], subject="user-2")
    mine = await http.post(NOTES, json={"text": "a"}, headers={"Idempotency-Key": "k6"})
    theirs = await http.post(NOTES, json={"text": "a"}, headers={"Idempotency-Key": "k6", **other})
    assert mine.json()["id"] != theirs.json()["id"]
    assert await _effects(db) == 2


async def test_validation_errors_are_problem_json_without_the_input(
    client: tuple[httpx.AsyncClient, Database],
) -> None:
    http, db = client
    secret = "Zarina Rahimova +992 900 000 000 " * 3
    answer = await http.post(NOTES, json={"text": secret}, headers={"Idempotency-Key": "k7"})

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 422
    assert problem["errors"][0]["loc"] == ["body", "text"]
    assert "Zarina" not in answer.text
    assert await _effects(db) == 0


async def test_unexpected_errors_answer_500_without_details(
    client: tuple[httpx.AsyncClient, Database],
) -> None:
    http, _ = client
    answer = await http.post(NOTES, json={"text": "crash"}, headers={"Idempotency-Key": "k8"})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert "secret" not in answer.text


async def test_unknown_route_is_a_problem_json_404(
    client: tuple[httpx.AsyncClient, Database],
) -> None:
    http, _ = client
    answer = await http.get("/api/v1/intake/nothing-here")
    assert answer.status_code == 404
    assert answer.json()["title"] == "Not found"
