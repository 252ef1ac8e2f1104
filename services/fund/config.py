"""The fund's policy and payout settings: `NRM_FUND_*` environment variables."""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SourceOrder = Literal["donor_first", "state_first"]


class FundSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NRM_FUND_", extra="ignore")

    # ISO 4217 codes a source or a request may use.
    currencies: list[str] = ["TJS", "USD", "EUR", "RUB"]
    request_max_minor: int = Field(default=1_000_000, gt=0)
    # Per case and purpose, over the rolling period: pending, approved and paid requests count.
    case_purpose_cap_minor: int = Field(default=2_000_000, gt=0)
    cap_period_days: int = Field(default=30, ge=1)
    # Above this amount the commission decides instead of a single fund officer.
    commission_threshold_minor: int = Field(default=300_000, ge=0)
    commission_quorum: int = Field(default=2, ge=2)
    # Earmarked donor lines pay first unless the officer picks a line or this says otherwise.
    source_order: SourceOrder = "donor_first"
    low_balance_minor: int = Field(default=100_000, ge=0)
    payout_provider_url: str | None = None
    payout_timeout_seconds: float = Field(default=10.0, gt=0)
    payout_poll_seconds: float = Field(default=1.0, gt=0)
    # An in-flight payout whose worker went silent this long is taken over (status first).
    payout_lease_seconds: float = Field(default=30.0, gt=0)
    payout_max_attempts: int = Field(default=10, ge=1)
    # AES-256-GCM key (base64, 32 bytes) for payee account numbers; dev generates one.
    payee_key: str | None = None


def fund_settings_of(app: FastAPI) -> FundSettings:
    """Read once per app, on first use (never at import); a test may set its own first."""
    settings: FundSettings | None = getattr(app.state, "fund_settings", None)
    if settings is None:
        settings = app.state.fund_settings = FundSettings()
    return settings
