"""Per-organisation choices: which channels for which event types, SMS quiet hours."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notify.models import Preferences
from services.notify.problems import invalid_field
from services.notify.routing import EVENT_TYPES
from services.notify.schemas import PreferencesBody, PreferencesPublic, QuietHours

USER_CHANNELS = ("in_app", "email", "sms")
DEFAULT_CHANNELS: dict[str, list[str]] = {"*": ["in_app", "email"]}


async def preferences_of(session: AsyncSession, org_id: str) -> Preferences:
    found = await session.get(Preferences, org_id)
    return found or Preferences(org_id=org_id, channels=json.dumps(DEFAULT_CHANNELS))


def channels_for(preferences: Preferences, event_type: str) -> frozenset[str]:
    table: dict[str, list[str]] = json.loads(preferences.channels)
    chosen = table.get(event_type, table.get("*", DEFAULT_CHANNELS["*"]))
    return frozenset(chosen)


def quiet_until(preferences: Preferences, now: datetime) -> datetime | None:
    """When the organisation's SMS quiet hours end, if `now` falls inside them."""
    start, end = preferences.quiet_start, preferences.quiet_end
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(ZoneInfo(preferences.timezone))
    hour = local.hour
    inside = start <= hour < end if start < end else hour >= start or hour < end
    if not inside:
        return None
    until = local.replace(hour=end, minute=0, second=0, microsecond=0)
    if until <= local:
        until += timedelta(days=1)
    return until.astimezone(now.tzinfo)


def to_public(preferences: Preferences) -> PreferencesPublic:
    quiet = None
    if preferences.quiet_start is not None and preferences.quiet_end is not None:
        quiet = QuietHours(
            start=preferences.quiet_start, end=preferences.quiet_end, timezone=preferences.timezone
        )
    return PreferencesPublic(
        org_id=preferences.org_id,
        channels=json.loads(preferences.channels),
        sms_quiet_hours=quiet,
    )


async def set_preferences(session: AsyncSession, org_id: str, body: PreferencesBody) -> Preferences:
    if any(key != "*" and key not in EVENT_TYPES for key in body.channels):
        raise invalid_field("channels", "Unknown event type; see the event catalogue.")
    quiet = body.sms_quiet_hours
    if quiet is not None and quiet.timezone not in available_timezones():
        raise invalid_field("sms_quiet_hours", "Unknown time zone.")
    preferences = await session.get(Preferences, org_id) or Preferences(org_id=org_id, channels="")
    preferences.channels = json.dumps({k: sorted(set(v)) for k, v in body.channels.items()})
    preferences.quiet_start = quiet.start if quiet else None
    preferences.quiet_end = quiet.end if quiet else None
    preferences.timezone = quiet.timezone if quiet else "Asia/Dushanbe"
    session.add(preferences)
    return preferences
