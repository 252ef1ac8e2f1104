"""Notify's API bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nrm.clock import UtcDatetime

Channel = Literal["in_app", "email", "sms"]


class PingReceiptPublic(BaseModel):
    ping_id: str
    source_org: str
    sent_at: UtcDatetime
    received_at: UtcDatetime


class NotificationPublic(BaseModel):
    id: str
    event_id: str
    event_type: str
    subject: str | None
    title: str
    body: str
    link: str
    language: str
    created_at: UtcDatetime
    read_at: UtcDatetime | None


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(min_length=1, max_length=50)
    # Only the platform admin may subscribe on behalf of another organisation.
    org_id: str | None = Field(default=None, max_length=100)


class SubscriptionPublic(BaseModel):
    id: str
    org_id: str
    url: str
    event_types: list[str]
    active: bool
    disabled_reason: str | None
    created_at: UtcDatetime


class SubscriptionCreated(SubscriptionPublic):
    # Shown once, here; a replayed request answers without it.
    secret: str | None


class DeliveryPublic(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: UtcDatetime | None
    created_at: UtcDatetime
    delivered_at: UtcDatetime | None


class ContactUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(
        default=None, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
    )
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class ContactPublic(BaseModel):
    user_id: str
    org_id: str
    email: str | None
    phone: str | None
    country: str | None
    language: str


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0, le=23)
    end: int = Field(ge=0, le=23)
    timezone: str = Field(default="Asia/Dushanbe", max_length=64)


class PreferencesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Event type (or "*" for every other type) -> channels for the organisation's users.
    channels: dict[str, list[Channel]] = Field(max_length=50)
    sms_quiet_hours: QuietHours | None = None


class PreferencesPublic(PreferencesBody):
    org_id: str
