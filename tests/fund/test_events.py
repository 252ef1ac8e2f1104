"""What the fund publishes (thin) and what it learns from other services' events."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlmodel import col, select

from gateway.events import OrganizationChanged
from nrm.events import envelope_for
from nrm.outbox import OutboxMessage
from services.fund.config import FundSettings
from services.fund.models import KnownCase, KnownOrganization
from services.intake.events import CaseErased, CaseRegistered
from tests.fund.conftest import Fund
from tests.support import eventually


@pytest.fixture
def fund_settings() -> FundSettings:
    return FundSettings(low_balance_minor=250_000)


async def _events(fund: Fund) -> list[dict[str, Any]]:
    async with fund.db.transaction() as session:
        rows = await session.exec(
            select(OutboxMessage.body).order_by(col(OutboxMessage.created_at))
        )
        return [json.loads(body) for body in rows.all()]


async def test_request_events_carry_ids_codes_and_amounts_but_never_the_payee(
    fund: Fund,
) -> None:
    await fund.source(balance=1_000_000)
    payee = {"kind": "person", "method": "bank_account", "account": "TJ1234567890"}
    request_id = await fund.submitted(100_000, payee=payee, justification="Ticket for Ms X")
    await fund.approve(request_id)
    events = await _events(fund)
    types = [e["type"] for e in events]
    assert types == ["nrm.fund.request.submitted.v1", "nrm.fund.request.approved.v1"]
    assert set(events[0]["data"]) == {
        "request_id", "case_id", "org_id", "amount_minor", "currency", "purpose", "needs_commission"
    }  # fmt: skip
    assert events[1]["subject"] == request_id
    raw = json.dumps(events)
    assert "1234567890" not in raw
    assert "Ms X" not in raw


async def test_a_line_dropping_under_its_threshold_announces_low_balance_once(
    fund: Fund,
) -> None:
    source = await fund.source(balance=400_000)
    for _ in range(3):
        await fund.approve(await fund.submitted(100_000))
    low = [e for e in await _events(fund) if e["type"] == "nrm.fund.source.low_balance.v1"]
    assert len(low) == 1
    assert low[0]["data"]["available_minor"] == 200_000
    assert low[0]["data"]["source_id"] == source["id"]


async def test_the_fund_learns_cases_and_sectors_from_events_over_the_bus(fund: Fund) -> None:
    case_id = uuid.uuid4()
    registered = CaseRegistered(
        case_id=case_id,
        org_id="police-dushanbe",
        case_type="presumed_trafficking_victim",
        urgency="critical",
        sensitivity=[],
        needs=["shelter"],
        consent_scopes=[],
    )
    changed = OrganizationChanged(org_id="ngo-new", sector="civil_society", active=True)
    bus = fund.client._transport.app.state.bus  # type: ignore[attr-defined]
    for event in (registered, changed):
        await bus.publish(event.type, envelope_for(event).to_json(), message_id=str(uuid.uuid4()))

    async def known() -> tuple[KnownCase, KnownOrganization] | None:
        async with fund.db.transaction() as session:
            case = await session.get(KnownCase, str(case_id))
            org = await session.get(KnownOrganization, "ngo-new")
        return (case, org) if case and org else None

    case, org = await eventually(known)
    assert (case.status, org.sector) == ("open", "civil_society")
    assert (await fund.submit(str(case_id), 1_000, purpose="shelter")).status_code == 201

    erased = CaseErased(case_id=case_id, org_id="police-dushanbe", reason="erasure_request")
    await bus.publish(erased.type, envelope_for(erased).to_json(), message_id=str(uuid.uuid4()))

    async def erased_status() -> str | None:
        async with fund.db.transaction() as session:
            found = await session.get(KnownCase, str(case_id))
        return found.status if found and found.status == "erased" else None

    await eventually(erased_status)
    refused = await fund.submit(str(case_id), 1_000, purpose="shelter")
    assert refused.status_code == 422
    assert "erased" in refused.json()["detail"]
