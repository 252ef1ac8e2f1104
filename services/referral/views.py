"""The local view of cases, kept from intake's events (idempotent, order-tolerant)."""

from __future__ import annotations

from services.referral.models import CaseView, unpack

ALL_REFERRALS = frozenset({"referral", "referral:*"})


def granted_scopes(view: CaseView) -> set[str]:
    return set(unpack(view.consent_scopes)) - set(unpack(view.withdrawn_scopes))


def has_referral_consent(view: CaseView, service_type: str) -> bool:
    withdrawn = set(unpack(view.withdrawn_scopes))
    if withdrawn & ALL_REFERRALS or f"referral:{service_type}" in withdrawn:
        return False
    granted = set(unpack(view.consent_scopes))
    return bool(granted & ALL_REFERRALS) or f"referral:{service_type}" in granted
