"""Inbox: a consumer applies each event once, in one transaction with its dedupe row."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from opentelemetry import propagate, trace
from sqlalchemy import DateTime, String
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.bus.base import Delivery, Rejected, Subscription
from nrm.clock import utcnow
from nrm.db import Database
from nrm.events import Envelope, Event, MalformedEvent, parse_data, parse_envelope

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

EventHandler = Callable[[AsyncSession, Any, Envelope], Awaitable[None]]


class InboxMessage(SQLModel, table=True):
    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=100)
    type: str = Field(sa_type=String(200))
    received_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class EventConsumer:
    """The bus handler of one consuming service: routes events by type to its handlers."""

    def __init__(
        self, consumer: str, db: Database, handlers: Mapping[type[Event], EventHandler]
    ) -> None:
        self.consumer = consumer
        self.db = db
        self._handlers = {event_class.type: (event_class, h) for event_class, h in handlers.items()}

    @property
    def subscription(self) -> Subscription:
        return Subscription(self.consumer, tuple(sorted(self._handlers)))

    async def __call__(self, delivery: Delivery) -> None:
        try:
            envelope = parse_envelope(delivery.body)
            route = self._handlers.get(envelope.type)
            if route is None:
                return  # bound more broadly than we handle: not ours, acknowledged
            event_class, handler = route
            event = parse_data(envelope, event_class)
        except MalformedEvent as exc:
            raise Rejected(str(exc)) from None

        parent = propagate.extract({"traceparent": envelope.traceparent or ""})
        with tracer.start_as_current_span(
            f"{self.consumer} consume {envelope.type}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.message.id": envelope.id,
                "messaging.destination.name": envelope.type,
                "nrm.delivery.attempt": delivery.attempt,
            },
        ):
            await self._apply_once(envelope, event, handler)

    async def _apply_once(self, envelope: Envelope, event: Event, handler: EventHandler) -> None:
        async with self.db.transaction() as session:
            if not await _claim(session, self.consumer, envelope):
                log.info("%s skipped duplicate event %s", self.consumer, envelope.id)
                return
            await handler(session, event, envelope)


def subscription_of(consumer: str, handlers: Mapping[type[Event], EventHandler]) -> Subscription:
    return Subscription(consumer, tuple(sorted(event_class.type for event_class in handlers)))


async def _claim(session: AsyncSession, consumer: str, envelope: Envelope) -> bool:
    """Insert the dedupe row; False if this consumer has already applied the event."""
    seen = await session.exec(
        select(InboxMessage.event_id).where(
            InboxMessage.consumer == consumer, InboxMessage.event_id == envelope.id
        )
    )
    if seen.first() is not None:
        return False
    session.add(InboxMessage(consumer=consumer, event_id=envelope.id, type=envelope.type))
    try:
        await session.flush()
    except IntegrityError:
        # A concurrent delivery of the same event committed first.
        await session.rollback()
        return False
    return True
