"""Paying approved requests: at a cash office, or through an HTTP payout provider.

The provider is called with the disbursement id as its Idempotency-Key. A disbursement
is marked `in_flight` (with a lease) and committed *before* the call, so a worker that
dies mid-call leaves a trace: whoever takes the lease over asks the provider for the
payout's status first and calls again only if the provider never received it. The
ledger's unique settlement per disbursement makes a second posting impossible anyway.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import httpx
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.errors import Conflict, NotFound
from nrm.outbox import record_event
from services.fund import ledger
from services.fund.events import DisbursementFailed, DisbursementPaid
from services.fund.models import Disbursement, FundRequest, KnownCase
from services.fund.payees import forget_payee

# Provider failure codes, mapped to ours; anything else is `provider_declined`.
FAILURE_CODES = {
    "invalid_account": "payee_account_invalid",
    "account_closed": "payee_account_invalid",
    "account_blocked": "payee_account_blocked",
    "limit_exceeded": "payee_limit_exceeded",
    "insufficient_funds": "provider_insufficient_funds",
}


@dataclass(frozen=True)
class Outcome:
    status: Literal["paid", "failed", "pending", "unknown"]
    code: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class PayoutOrder:
    disbursement_id: str
    amount_minor: int
    currency: str
    method: str
    account: str | None


class ProviderUnreachable(Exception):
    """No answer we can trust (timeout, connection, 5xx): the payout's fate is unknown."""


class PayoutProvider:
    """A bank or mobile-money API: `POST /payouts` and `GET /payouts/{id}`."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, *, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.timeout = timeout

    async def pay(self, order: PayoutOrder) -> Outcome:
        body = {
            "disbursement_id": order.disbursement_id,
            "amount_minor": order.amount_minor,
            "currency": order.currency,
            "method": order.method,
            "account": order.account,
        }
        response = await self._call(
            "POST",
            "/payouts",
            json=body,
            headers={"Idempotency-Key": order.disbursement_id},
        )
        if response.status_code in (400, 402, 409, 422):
            return Outcome("failed", _mapped(response))
        return _outcome(response)

    async def status(self, disbursement_id: str) -> Outcome:
        response = await self._call("GET", f"/payouts/{disbursement_id}")
        if response.status_code == 404:
            return Outcome("unknown")
        return _outcome(response)

    async def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = await self.http.request(
                method,
                self.base_url + path,
                timeout=self.timeout,
                **kwargs,  # type: ignore[arg-type]
            )
        except httpx.HTTPError as exc:
            raise ProviderUnreachable(type(exc).__name__) from None
        if response.status_code >= 500:
            raise ProviderUnreachable(f"HTTP {response.status_code}")
        return response


def _mapped(response: httpx.Response) -> str:
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        code = None
    return FAILURE_CODES.get(str(code), "provider_declined")


def _outcome(response: httpx.Response) -> Outcome:
    if not response.is_success:
        raise ProviderUnreachable(f"HTTP {response.status_code}")
    try:
        data = response.json()
        status = data["status"]
    except (ValueError, KeyError, TypeError):
        raise ProviderUnreachable("unreadable answer") from None
    if status == "paid":
        return Outcome("paid", reference=str(data.get("reference") or "")[:100] or None)
    if status == "failed":
        return Outcome("failed", FAILURE_CODES.get(str(data.get("code")), "provider_declined"))
    return Outcome("pending")


async def settle(
    session: AsyncSession,
    disbursement: Disbursement,
    *,
    paid: bool,
    by: str,
    now: datetime,
    code: str | None = None,
    reference: str | None = None,
) -> None:
    """Post the outcome in the ledger, once: reserved → paid, or back to available."""
    request = await session.get(FundRequest, disbursement.request_id, with_for_update=True)
    assert request is not None
    disbursement.status = "paid" if paid else "failed"
    disbursement.settled_at = now
    disbursement.lease_until = None
    disbursement.failure_code = None if paid else code
    disbursement.provider_reference = reference
    request.status = "paid" if paid else "failed"
    case = await session.get(KnownCase, request.case_id)
    if case is not None and case.status == "erased":
        forget_payee(request)  # it was in flight when the case was erased (erasure.py)
    session.add_all([disbursement, request])
    await ledger.settle(
        session,
        disbursement.line_id,
        disbursement.amount_minor,
        paid=paid,
        request_id=request.id,
        disbursement_id=disbursement.id,
        created_by=by,
        reference=reference,
    )
    fields = {
        "request_id": uuid.UUID(request.id),
        "disbursement_id": uuid.UUID(disbursement.id),
        "case_id": uuid.UUID(request.case_id),
        "org_id": request.org_id,
        "amount_minor": disbursement.amount_minor,
        "currency": disbursement.currency,
    }
    if paid:
        record_event(session, DisbursementPaid(**fields))
    else:
        record_event(session, DisbursementFailed(reason=code or "failed", **fields))


async def record_cash_handover(
    session: AsyncSession, request_id: str, *, by: Principal, receipt_number: str, now: datetime
) -> FundRequest:
    request = await session.get(FundRequest, request_id, with_for_update=True)
    if request is None:
        raise NotFound("No such request.")
    if request.status != "approved":
        raise Conflict(
            f"Only an approved request can be paid; this one is {request.status}.",
            extra={"status": request.status},
        )
    disbursement = await _locked_disbursement(session, request.id)
    if disbursement.channel != "cash_office" or disbursement.status != "pending":
        raise Conflict("This request is paid through the payout provider, not a cash office.")
    disbursement.receipt_number = receipt_number
    await settle(session, disbursement, paid=True, by=by.subject, now=now, reference=receipt_number)
    return request


async def _locked_disbursement(session: AsyncSession, request_id: str) -> Disbursement:
    query = select(Disbursement).where(Disbursement.request_id == request_id).with_for_update()
    found = (await session.exec(query.execution_options(populate_existing=True))).first()
    assert found is not None, "an approved request always has its disbursement"
    return found
