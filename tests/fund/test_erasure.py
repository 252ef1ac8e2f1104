"""An erased case is paid nothing more, and the fund forgets the person's account."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlmodel import col, select

from nrm.clock import utcnow
from nrm.events import envelope_for
from nrm.outbox import OutboxMessage
from services.fund import ledger
from services.fund.handlers import case_erased
from services.fund.models import Disbursement, FundRequest, Vote
from services.fund.payouts import settle
from services.intake.events import CaseErased
from tests.fund.conftest import Fund

WALLET = {"kind": "person", "method": "mobile_wallet", "account": "+992900111222"}
CASH = {"kind": "person", "method": "cash_office"}


async def erase(fund: Fund, case_id: str) -> None:
    event = CaseErased(case_id=uuid.UUID(case_id), org_id="police-dushanbe", reason="court_order")
    async with fund.db.transaction() as session:
        await case_erased(session, event, envelope_for(event))


async def stored(fund: Fund, request_id: str) -> tuple[FundRequest, Disbursement | None]:
    async with fund.db.transaction() as session:
        request = await session.get(FundRequest, request_id)
        query = select(Disbursement).where(Disbursement.request_id == request_id)
        disbursement = (await session.exec(query)).first()
    assert request is not None
    return request, disbursement


async def submitted(fund: Fund, case_id: str, amount: int, payee: dict[str, Any]) -> str:
    answer = await fund.submit(case_id, amount, payee=payee, justification="Ticket for Ms X")
    assert answer.status_code == 201, answer.text
    request_id: str = answer.json()["id"]
    return request_id


async def test_what_was_not_paid_is_stopped_and_the_payee_forgotten(fund: Fund) -> None:
    source = await fund.source(balance=1_000_000)
    case_id = await fund.case()
    undecided = await submitted(fund, case_id, 10_000, WALLET)
    approved = await submitted(fund, case_id, 20_000, WALLET)
    assert (await fund.approve(approved)).status_code == 200
    assert (await fund.line(source["id"]))["available_minor"] == 980_000

    await erase(fund, case_id)

    request, _ = await stored(fund, undecided)
    assert (request.status, request.rejection_reason) == ("rejected", "case_erased")
    request, disbursement = await stored(fund, approved)
    assert request.status == "failed"
    assert disbursement is not None
    assert (disbursement.status, disbursement.failure_code) == ("failed", "case_erased")
    assert (await fund.line(source["id"]))["available_minor"] == 1_000_000, "reservation voided"
    for request_id in (undecided, approved):
        request, _ = await stored(fund, request_id)
        assert request.payee_account_sealed is None
        assert request.payee_account_hint is None
        assert "Ms X" not in request.justification
    async with fund.db.transaction() as session:
        assert await ledger.discrepancies(session) == []
        bodies = (await session.exec(select(OutboxMessage.body))).all()
    told = {(e["type"], e["data"].get("reason")) for e in map(json.loads, bodies)}
    assert ("nrm.fund.request.rejected.v1", None) in told
    assert ("nrm.fund.disbursement.failed.v1", "case_erased") in told


async def test_a_payout_already_with_the_provider_settles_then_forgets(fund: Fund) -> None:
    await fund.source(balance=1_000_000)
    case_id = await fund.case()
    request_id = await submitted(fund, case_id, 20_000, WALLET)
    assert (await fund.approve(request_id)).status_code == 200
    async with fund.db.transaction() as session:
        # As the payout worker leaves it once the provider has been called.
        query = select(Disbursement).where(col(Disbursement.request_id) == request_id)
        claimed = (await session.exec(query)).one()
        claimed.status = "in_flight"
        session.add(claimed)

    await erase(fund, case_id)

    request, disbursement = await stored(fund, request_id)
    assert request.status == "approved", "voiding it could let the provider pay it unrecorded"
    assert disbursement is not None
    assert disbursement.status == "in_flight"
    assert request.payee_account_sealed is not None, "a retry still needs the account"

    async with fund.db.transaction() as session:
        await settle(session, disbursement, paid=True, by="payout-worker", now=utcnow())

    request, _ = await stored(fund, request_id)
    assert request.status == "paid"
    assert request.payee_account_sealed is None
    assert request.payee_account_hint is None


async def test_a_case_erased_after_payment_keeps_the_books_and_drops_the_account(
    fund: Fund,
) -> None:
    await fund.source(balance=1_000_000)
    case_id = await fund.case()
    request_id = await submitted(fund, case_id, 20_000, WALLET)
    assert (await fund.approve(request_id)).status_code == 200
    _, disbursement = await stored(fund, request_id)
    assert disbursement is not None
    async with fund.db.transaction() as session:
        await settle(session, disbursement, paid=True, by="payout-worker", now=utcnow())

    await erase(fund, case_id)

    request, disbursement = await stored(fund, request_id)
    assert request.status == "paid"
    assert disbursement is not None
    assert disbursement.status == "paid", "what was paid stays paid in the books"
    assert request.payee_account_sealed is None
    assert request.payee_account_hint is None
    assert "Ms X" not in request.justification


async def test_reasons_staff_typed_about_the_person_are_forgotten(fund: Fund) -> None:
    case_id = await fund.case()
    rejected = await submitted(fund, case_id, 10_000, CASH)
    assert (await fund.reject(rejected, reason="Ms X already got a ticket")).status_code == 200
    async with fund.db.transaction() as session:
        session.add(
            Vote(
                request_id=rejected,
                voter="member-1",
                org_id="ngo-x",
                sector="civil_society",
                decision="reject",
                reason="Ms X is known to us",
            )
        )

    await erase(fund, case_id)

    request, _ = await stored(fund, rejected)
    assert request.rejection_reason is not None
    assert "Ms X" not in request.rejection_reason
    async with fund.db.transaction() as session:
        reasons = (await session.exec(select(Vote.reason))).all()
    assert reasons == [None]
