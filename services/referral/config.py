"""Referral settings: `NRM_REFERRAL_*` environment variables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from nrm.clock import utcnow
from nrm.vocabulary import Urgency

# Where a session finds the clock its work should read (tests put a controllable one there).
CLOCK_KEY = "referral.clock"
Clock = Callable[[], datetime]


class ReferralSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NRM_REFERRAL_", extra="ignore")

    # How long a provider has to answer, by urgency (seconds or ISO 8601, e.g. PT2H).
    sla_critical: timedelta = timedelta(hours=2)
    sla_high: timedelta = timedelta(hours=24)
    sla_normal: timedelta = timedelta(hours=72)
    sla_low: timedelta = timedelta(days=7)
    # Providers tried for one need before the commission is asked to step in.
    max_attempts: int = Field(default=3, ge=1, le=20)
    # Seconds between two passes of the escalation scheduler.
    scheduler_interval: float = Field(default=30.0, gt=0)

    def sla(self, urgency: Urgency) -> timedelta:
        sla: timedelta = getattr(self, f"sla_{urgency}")
        return sla


@lru_cache(maxsize=1)
def referral_settings() -> ReferralSettings:
    """Read once, on first use (never at import)."""
    return ReferralSettings()


def now_of(info: dict[str, object]) -> datetime:
    """The time by the clock installed in a session's info, else the wall clock."""
    clock = info.get(CLOCK_KEY, utcnow)
    assert callable(clock)
    moment: datetime = clock()
    return moment
