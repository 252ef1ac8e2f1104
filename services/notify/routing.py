"""Who hears of what: a plain table from event type to audiences.

An audience is the users of one organisation holding some roles (and that
organisation's webhook subscriptions), or everyone holding some roles anywhere
(the commission, fund officers). Notify knows users from the gateway's UserChanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nrm.events import Event
from services.fund.events import (
    DisbursementFailed,
    DisbursementPaid,
    RequestApproved,
    RequestRejected,
    RequestSubmitted,
    SourceLowBalance,
)
from services.intake.events import (
    CaseClosed,
    CaseErased,
    CaseRegistered,
    CaseUpdated,
    ConsentWithdrawn,
)
from services.referral.events import (
    ReferralAccepted,
    ReferralCompleted,
    ReferralCreated,
    ReferralDeclined,
    ReferralEscalated,
    ReferralRevoked,
)

CASE_HOLDERS = frozenset({"intake_officer", "case_worker"})
PROVIDERS = frozenset({"provider", "case_worker"})
COMMISSION = frozenset({"commission_member"})
FUND_OFFICERS = frozenset({"fund_officer"})


@dataclass(frozen=True)
class Audience:
    org_id: str | None  # None: holders of the roles in any organisation
    roles: frozenset[str]

    @property
    def gets_webhooks(self) -> bool:
        return self.org_id is not None


Route = Callable[[Any], list[Audience]]


def _org(field: str, roles: frozenset[str]) -> Route:
    return lambda event: [Audience(getattr(event, field), roles)]


def _escalated(event: ReferralEscalated) -> list[Audience]:
    audiences = [Audience(None, COMMISSION), Audience(event.from_org, CASE_HOLDERS)]
    if event.next_org:
        audiences.append(Audience(event.next_org, PROVIDERS))
    return audiences


def _submitted(event: RequestSubmitted) -> list[Audience]:
    audiences = [Audience(None, FUND_OFFICERS)]
    if event.needs_commission:
        audiences.append(Audience(None, COMMISSION))
    return audiences


def _disbursement_failed(event: DisbursementFailed) -> list[Audience]:
    return [Audience(event.org_id, CASE_HOLDERS), Audience(None, FUND_OFFICERS)]


ROUTES: dict[type[Event], Route] = {
    CaseRegistered: _org("org_id", CASE_HOLDERS),
    CaseUpdated: _org("org_id", CASE_HOLDERS),
    ConsentWithdrawn: _org("org_id", CASE_HOLDERS),
    CaseClosed: _org("org_id", CASE_HOLDERS),
    CaseErased: _org("org_id", CASE_HOLDERS),
    ReferralCreated: _org("to_org", PROVIDERS),
    ReferralAccepted: _org("from_org", CASE_HOLDERS),
    ReferralDeclined: _org("from_org", CASE_HOLDERS),
    ReferralCompleted: _org("from_org", CASE_HOLDERS),
    ReferralRevoked: _org("to_org", PROVIDERS),
    ReferralEscalated: _escalated,
    RequestSubmitted: _submitted,
    RequestApproved: _org("org_id", CASE_HOLDERS),
    RequestRejected: _org("org_id", CASE_HOLDERS),
    DisbursementPaid: _org("org_id", CASE_HOLDERS),
    DisbursementFailed: _disbursement_failed,
    SourceLowBalance: lambda _event: [Audience(None, FUND_OFFICERS)],
}

EVENT_TYPES = frozenset(event_class.type for event_class in ROUTES)
EVENT_CLASSES: dict[str, type[Event]] = {event_class.type: event_class for event_class in ROUTES}


def audiences_for(event: Event) -> list[Audience]:
    return ROUTES[type(event)](event)
