from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.keys import SigningKeys
from nrm.db import Database
from nrm.events import envelope_for
from nrm.runner import connected_bus, migrate
from nrm.settings import Settings
from services.fund.app import create_app
from services.fund.config import FundSettings
from services.fund.handlers import case_closed, case_registered, remember_organization
from services.intake.events import CaseClosed, CaseRegistered
from tests.support import PostgresDatabases, bearer, runtime_for, serving

ACTORS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # name: (subject, organisation, roles)
    "officer": ("officer-1", "ministry-labour", ("fund_officer",)),
    "officer2": ("officer-2", "ministry-labour", ("fund_officer",)),
    "member_state": ("member-state", "ministry-interior", ("commission_member",)),
    "member_state2": ("member-state-2", "ministry-interior", ("commission_member",)),
    "member_ngo": ("member-ngo", "ngo-migrant-support", ("commission_member",)),
    "member_unknown": ("member-x", "org-unknown", ("commission_member",)),
    "requester": ("intake-1", "police-dushanbe", ("intake_officer",)),
    "other_org": ("intake-2", "shelter-khujand", ("intake_officer",)),
    "auditor": ("auditor-1", "ombudsman", ("auditor",)),
}
SECTORS = {
    "ministry-labour": "state",
    "ministry-interior": "state",
    "ngo-migrant-support": "civil_society",
    "police-dushanbe": "state",
}
REQUESTS = "/api/v1/fund/requests"
SOURCES = "/api/v1/fund/sources"
_keys = itertools.count()


@dataclass
class Fund:
    """A running fund service and the people who use it."""

    client: httpx.AsyncClient
    db: Database
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_(self, actor: str, **extra: str) -> dict[str, str]:
        return {**self.headers[actor], **extra}

    async def case(self, *, closed: bool = False, org: str = "police-dushanbe") -> str:
        case_id = uuid.uuid4()
        registered = CaseRegistered(
            case_id=case_id,
            org_id=org,
            case_type="vulnerable_migrant",
            urgency="high",
            sensitivity=[],
            needs=["return_travel"],
            consent_scopes=[],
        )
        async with self.db.transaction() as session:
            await case_registered(session, registered, envelope_for(registered))
            if closed:
                event = CaseClosed(case_id=case_id, org_id="police-dushanbe", reason="resolved")
                await case_closed(session, event, envelope_for(event))
        return str(case_id)

    async def source(
        self, kind: str = "state_budget", *, balance: int = 0, purpose: str = "return_travel"
    ) -> dict[str, Any]:
        created = await self.client.post(
            SOURCES,
            json={"kind": kind, "name": f"{kind} fund", "lines": [{"purpose": purpose}]},
            headers=self.as_("officer"),
        )
        assert created.status_code == 201, created.text
        source: dict[str, Any] = created.json()
        if balance:
            source = await self.allocate(source["id"], balance, purpose=purpose)
        return source

    async def allocate(
        self, source_id: str, amount: int, *, purpose: str = "return_travel"
    ) -> dict[str, Any]:
        allocated = await self.client.post(
            f"{SOURCES}/{source_id}/allocations",
            json={
                "purpose": purpose,
                "amount_minor": amount,
                "currency": "TJS",
                "reference": "budget order 12/2026",
                "value_date": "2026-11-01",
            },
            headers=self.as_("officer"),
        )
        assert allocated.status_code == 201, allocated.text
        result: dict[str, Any] = allocated.json()
        return result

    def request_body(self, case_id: str, amount: int, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "case_id": case_id,
            "amount_minor": amount,
            "currency": "TJS",
            "purpose": "return_travel",
            "payee": {"kind": "person", "method": "cash_office"},
            "justification": "Ticket home from Moscow",
        }
        body.update(overrides)
        return body

    async def submit(
        self, case_id: str, amount: int, *, actor: str = "requester", **overrides: Any
    ) -> httpx.Response:
        return await self.client.post(
            REQUESTS,
            json=self.request_body(case_id, amount, **overrides),
            headers=self.as_(actor, **{"Idempotency-Key": f"key-{next(_keys)}"}),
        )

    async def submitted(self, amount: int, **overrides: Any) -> str:
        response = await self.submit(await self.case(), amount, **overrides)
        assert response.status_code == 201, response.text
        request_id: str = response.json()["id"]
        return request_id

    async def approve(self, request_id: str, actor: str = "officer", **body: Any) -> httpx.Response:
        return await self.client.post(
            f"{REQUESTS}/{request_id}/approve", json=body, headers=self.as_(actor)
        )

    async def hand_over(self, request_id: str, receipt_number: str) -> httpx.Response:
        return await self.client.post(
            f"{REQUESTS}/{request_id}/cash-handover",
            json={"receipt_number": receipt_number},
            headers=self.as_("officer"),
        )

    async def get(self, request_id: str, actor: str = "officer") -> httpx.Response:
        return await self.client.get(f"{REQUESTS}/{request_id}", headers=self.as_(actor))

    async def reject(
        self, request_id: str, actor: str = "officer", reason: str = "no"
    ) -> httpx.Response:
        return await self.client.post(
            f"{REQUESTS}/{request_id}/reject", json={"reason": reason}, headers=self.as_(actor)
        )

    async def line(self, source_id: str) -> dict[str, Any]:
        listed = await self.client.get(SOURCES, headers=self.as_("officer"))
        assert listed.status_code == 200, listed.text
        for source in listed.json()["items"]:
            if source["id"] == source_id:
                line: dict[str, Any] = source["lines"][0]
                return line
        raise AssertionError("source not listed")


@pytest.fixture
def fund_settings() -> FundSettings:
    return FundSettings(_env_file=None)


async def running_fund(
    settings: Settings, keys: SigningKeys, fund_settings: FundSettings
) -> AsyncIterator[Fund]:
    await migrate(settings, ["fund"])
    async with connected_bus(settings, "test-fund") as bus:
        app = create_app(runtime_for(settings, bus, keys))
        app.state.fund_settings = fund_settings
        async with serving(app) as client:
            fund = Fund(client, app.state.db)
            for actor, (subject, org, roles) in ACTORS.items():
                fund.headers[actor] = bearer(keys, settings, roles=roles, org=org, subject=subject)
            async with fund.db.transaction() as session:
                for org, sector in SECTORS.items():
                    await remember_organization(session, org, sector)
            yield fund


@pytest.fixture
async def fund(
    settings: Settings, signing_keys: SigningKeys, fund_settings: FundSettings
) -> AsyncIterator[Fund]:
    async for running in running_fund(settings, signing_keys, fund_settings):
        yield running


@pytest.fixture
async def pg_fund(
    tmp_path: Path,
    postgres: PostgresDatabases,
    signing_keys: SigningKeys,
    fund_settings: FundSettings,
) -> AsyncIterator[Fund]:
    settings = Settings(
        data_dir=tmp_path, fund_database_url=await postgres.create("fund"), _env_file=None
    )
    async for running in running_fund(settings, signing_keys, fund_settings):
        yield running
