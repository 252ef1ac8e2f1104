"""Tables of the notify database."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from nrm.clock import utcnow

NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def new_id() -> str:
    """A UUIDv7: random, yet ordered by creation time, so ids double as paging keys."""
    millis = time.time_ns() // 1_000_000
    raw = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


class NotifyTable(SQLModel, registry=registry()):
    """Base of the notify tables: their own metadata, apart from other components'."""


class PingReceipt(NotifyTable, table=True):
    """A diagnostic ping that reached notify through the bus."""

    __tablename__ = "ping_receipts"

    ping_id: str = Field(primary_key=True, max_length=36)
    source_org: str = Field(max_length=100)
    sent_at: datetime = Field(sa_type=DateTime(timezone=True))
    received_at: datetime = Field(sa_type=DateTime(timezone=True))


class Recipient(NotifyTable, table=True):
    """A staff user as the gateway announced them, plus contact data registered here."""

    __tablename__ = "recipients"
    __table_args__ = (Index("ix_recipients_org", "org_id"),)

    user_id: str = Field(primary_key=True, max_length=100)
    org_id: str = Field(max_length=100)
    roles: str = Field(default="", sa_type=String(400))  # space-separated role codes
    language: str = Field(default="ru", sa_type=String(8))
    active: bool = True
    email: str | None = Field(default=None, sa_type=String(254))
    phone: str | None = Field(default=None, sa_type=String(20))
    country: str | None = Field(default=None, sa_type=String(2))
    # When the gateway last described this user (the event's time), to ignore stale events.
    updated_at: datetime = Field(default=NEVER, sa_type=DateTime(timezone=True))

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(self.roles.split())


class OrganizationState(NotifyTable, table=True):
    """Whether an organisation is active, as the gateway announced it."""

    __tablename__ = "organizations"

    org_id: str = Field(primary_key=True, max_length=100)
    active: bool = True


class Preferences(NotifyTable, table=True):
    """An organisation's choice of channels per event type, and its SMS quiet hours."""

    __tablename__ = "preferences"

    org_id: str = Field(primary_key=True, max_length=100)
    channels: str = Field(sa_type=Text)  # JSON: {event type or "*": [channel, ...]}
    quiet_start: int | None = Field(default=None, sa_type=Integer)  # hour 0-23, local
    quiet_end: int | None = Field(default=None, sa_type=Integer)
    timezone: str = Field(default="Asia/Dushanbe", sa_type=String(64))


class Notification(NotifyTable, table=True):
    """An in-app notification: one per event and user."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("event_id", "user_id", name="uq_notifications_event_user"),
        Index("ix_notifications_user", "user_id", "id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    event_id: str = Field(max_length=100)
    event_type: str = Field(sa_type=String(200))
    user_id: str = Field(max_length=100)
    org_id: str = Field(max_length=100)
    envelope: str = Field(sa_type=Text)  # the thin CloudEvent, rendered when read
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    read_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Notice(NotifyTable, table=True):
    """An event that was fanned out, kept a while for users notify learns of later.

    The gateway's word about a user can arrive after an event meant for them (a new
    account, or the two messages crossing); from these the user's in-app notifications
    are filled in when notify learns of them (fanout.backfill).
    """

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_created", "created_at"),)

    event_id: str = Field(primary_key=True, max_length=100)
    event_type: str = Field(sa_type=String(200))
    envelope: str = Field(sa_type=Text)  # the thin CloudEvent
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class WebhookSubscription(NotifyTable, table=True):
    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_org", "org_id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    org_id: str = Field(max_length=100)
    url: str = Field(sa_type=String(2000))
    event_types: str = Field(sa_type=Text)  # space-separated event types
    secret: str = Field(sa_type=String(200))  # encrypted, see secrets.py
    active: bool = True
    disabled_reason: str | None = Field(default=None, sa_type=String(100))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    deleted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))

    @property
    def event_type_list(self) -> list[str]:
        return self.event_types.split()


class Delivery(NotifyTable, table=True):
    """One message to one target over one channel, with its retry state."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "channel", "target", name="uq_deliveries_event_target"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_subscription", "subscription_id", "id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    channel: str = Field(sa_type=String(16))  # webhook, email, sms
    target: str = Field(max_length=100)  # subscription id or user id
    subscription_id: str | None = Field(default=None, max_length=36)
    org_id: str = Field(max_length=100)
    event_id: str = Field(max_length=100)
    event_type: str = Field(sa_type=String(200))
    envelope: str = Field(sa_type=Text)
    status: str = Field(default="pending", sa_type=String(16))  # pending, delivered, dead
    attempts: int = Field(default=0, sa_type=Integer)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    last_status_code: int | None = Field(default=None, sa_type=Integer)
    last_error: str | None = Field(default=None, sa_type=String(200))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    delivered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class DeliveryAttempt(NotifyTable, table=True):
    """The delivery log: every attempt, its answer and how long it took."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_delivery", "delivery_id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    delivery_id: str = Field(max_length=36)
    attempted_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    status_code: int | None = Field(default=None, sa_type=Integer)
    outcome: str = Field(sa_type=String(16))  # delivered, retry, dead, disabled
    error: str | None = Field(default=None, sa_type=String(200))
    duration_ms: int = Field(default=0, sa_type=Integer)
