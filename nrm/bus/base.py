"""The bus interface both implementations (in-memory, RabbitMQ) honour.

Semantics, checked by one contract test suite against both:
- publish returns only once the broker has taken the message (publisher confirm);
  an unroutable message, a nack or a lost connection raises PublishFailed.
- delivery is at least once; a handler that raises gets the message again
  (attempt + 1) until `delivery_limit` attempts, then it is dead-lettered intact
  to `<consumer>.dead` with the reason.
- a handler that raises Rejected dead-letters the message at once (malformed input
  will never succeed) and the consumer keeps going.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nrm.errors import qualified

EVENTS_EXCHANGE = "nrm.events"
DEAD_EXCHANGE = "nrm.dead"

# Header names we add to dead letters so an operator can see why and from where.
DEAD_REASON_HEADER = "x-nrm-dead-reason"
ORIGINAL_ROUTING_KEY_HEADER = "x-nrm-original-routing-key"


def exhausted(limit: int, error: BaseException) -> str:
    """The dead-letter reason after the last failed attempt: the error's type, never its
    message (the reason stays on the message in the dead queue, for anyone to read)."""
    return f"delivery limit {limit} reached: {qualified(type(error))}"


class PublishFailed(RuntimeError):
    """The broker did not take the message: the caller keeps it and tries again later."""


class Rejected(Exception):
    """Raised by a handler for a message that can never succeed; it is dead-lettered now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Subscription:
    """A consuming service: its queue `<consumer>.events` bound to the given patterns."""

    consumer: str
    patterns: tuple[str, ...]

    @property
    def queue(self) -> str:
        return f"{self.consumer}.events"

    @property
    def dead_queue(self) -> str:
        return f"{self.consumer}.dead"


@dataclass(frozen=True)
class Delivery:
    routing_key: str
    body: bytes
    message_id: str
    attempt: int = 1
    headers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    routing_key: str
    body: bytes
    message_id: str
    reason: str
    headers: Mapping[str, Any] = field(default_factory=dict)


Handler = Callable[[Delivery], Awaitable[None]]


class Bus(Protocol):
    async def connect(self) -> None: ...

    async def declare(self, subscriptions: Sequence[Subscription]) -> None:
        """Declare the exchanges and every consumer's queues (idempotent).

        Declaring all queues up front means an event published before its
        consumer first starts waits in the queue instead of being unroutable.
        """

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, Any] | None = None,
    ) -> None: ...

    async def consume(self, subscription: Subscription, handler: Handler) -> None:
        """Start consuming in the background; returns once the consumer is registered."""

    async def take_dead_letters(self, consumer: str, limit: int = 100) -> list[DeadLetter]:
        """Remove and return up to `limit` dead letters of a consumer (for operators, tests)."""

    async def is_ready(self) -> bool: ...

    async def close(self) -> None: ...
