"""What a channel adapter answers about one attempt."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    # A short code, never content: it is stored and shown in the delivery log.
    error: str | None = None
    # The receiver said it is gone for good (410): stop sending to it.
    gone: bool = False
    # Will never succeed (e.g. channel not configured): no retry.
    final: bool = False
