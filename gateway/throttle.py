"""Repeated failed sign-ins per username, client and IP: slowed first, then locked a while."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.models import SignInFailures
from nrm.clock import as_utc, utcnow
from nrm.db import Database


@dataclass(frozen=True)
class ThrottlePolicy:
    slow_after: int = 5
    lock_after: int = 10
    lock_for: timedelta = timedelta(minutes=15)
    window: timedelta = timedelta(minutes=15)
    max_delay: float = 4.0

    def delay(self, failures: int) -> float:
        """Seconds to hold the answer after this many failures: doubling, then capped."""
        if failures <= self.slow_after:
            return 0.0
        return min(0.25 * 2.0 ** (failures - self.slow_after), self.max_delay)


class SignInThrottle:
    def __init__(self, db: Database, policy: ThrottlePolicy) -> None:
        self.db = db
        self.policy = policy

    async def locked_for(self, keys: Sequence[str]) -> int:
        """Seconds until every key is unlocked; 0 if none is locked."""
        now = utcnow()
        remaining = 0.0
        async with self.db.transaction() as session:
            for key in keys:
                entry = await session.get(SignInFailures, key)
                if entry is not None and entry.locked_until is not None:
                    remaining = max(remaining, (as_utc(entry.locked_until) - now).total_seconds())
        return int(remaining) + 1 if remaining > 0 else 0

    async def failed(self, keys: Sequence[str]) -> None:
        """Count a failure against each key, then wait as long as the worst key deserves."""
        now = utcnow()
        worst = 0
        async with self.db.transaction() as session:
            for key in keys:
                entry = await session.get(SignInFailures, key, with_for_update=True)
                if entry is None or self._window_over(entry, now):
                    entry = entry or SignInFailures(key=key)
                    entry.failures, entry.window_started_at, entry.locked_until = 0, now, None
                entry.failures += 1
                if entry.failures >= self.policy.lock_after:
                    entry.locked_until = now + self.policy.lock_for
                session.add(entry)
                worst = max(worst, entry.failures)
        await asyncio.sleep(self.policy.delay(worst))

    def _window_over(self, entry: SignInFailures, now: datetime) -> bool:
        still_locked = entry.locked_until is not None and as_utc(entry.locked_until) > now
        return not still_locked and as_utc(entry.window_started_at) + self.policy.window < now

    async def succeeded(self, key: str) -> None:
        async with self.db.transaction() as session:
            entry = await session.get(SignInFailures, key)
            if entry is not None:
                await session.delete(entry)
