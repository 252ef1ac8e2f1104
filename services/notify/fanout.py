"""From one event to its notifications and deliveries, in the consumer's transaction."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.clock import utcnow
from nrm.db import after_commit
from nrm.events import Envelope, Event, MalformedEvent, parse_data, parse_envelope
from services.notify.models import (
    Delivery,
    Notice,
    Notification,
    OrganizationState,
    Recipient,
    WebhookSubscription,
)
from services.notify.preferences import channels_for, preferences_of
from services.notify.routing import ROUTES, Audience, audiences_for

# Set on the database's session info by the delivery worker, so new rows wake it.
WAKE_DELIVERIES = "nrm.notify.wake"


# How long an event is kept for users notify learns of after it (see Notice).
NOTICE_WINDOW = timedelta(hours=72)
EVENT_TYPES: dict[str, type[Event]] = {event.type: event for event in ROUTES}


async def fan_out(session: AsyncSession, event: Event, envelope: Envelope) -> None:
    body = envelope.to_json().decode()
    session.add(Notice(event_id=envelope.id, event_type=envelope.type, envelope=body))
    await session.exec(delete(Notice).where(col(Notice.created_at) < utcnow() - NOTICE_WINDOW))
    audiences = [a for a in audiences_for(event) if await _org_active(session, a.org_id)]
    for recipient in await _recipients(session, audiences):
        channels = channels_for(await preferences_of(session, recipient.org_id), envelope.type)
        if "in_app" in channels:
            session.add(_notification(recipient, envelope.id, envelope.type, body))
        for channel, address in (("email", recipient.email), ("sms", recipient.phone)):
            if channel in channels and address:
                session.add(_delivery(channel, recipient.user_id, recipient.org_id, envelope, body))
    for subscription in await _subscriptions(session, audiences, envelope.type):
        delivery = _delivery("webhook", subscription.id, subscription.org_id, envelope, body)
        delivery.subscription_id = subscription.id
        session.add(delivery)
    waker = session.info.get(WAKE_DELIVERIES)
    if waker is not None:
        after_commit(session, waker)


async def backfill(session: AsyncSession, recipient: Recipient) -> int:
    """Give a user notify has just learned of (or whose roles grew) the in-app
    notifications of the kept events meant for them; how many. Only in-app: an e-mail or
    text about yesterday's referral would be news from the past."""
    if not recipient.active or not await _org_active(session, recipient.org_id):
        return 0
    preferences = await preferences_of(session, recipient.org_id)
    have = select(Notification.event_id).where(Notification.user_id == recipient.user_id)
    already = set((await session.exec(have)).all())
    kept = select(Notice).where(col(Notice.created_at) >= utcnow() - NOTICE_WINDOW)
    added = 0
    for notice in (await session.exec(kept)).all():
        event_class = EVENT_TYPES.get(notice.event_type)
        if notice.event_id in already or event_class is None:
            continue
        try:
            event = parse_data(parse_envelope(notice.envelope.encode()), event_class)
        except MalformedEvent:
            continue  # kept under an older model of its type: not worth failing a user over
        meant = any(_includes(audience, recipient) for audience in audiences_for(event))
        if meant and "in_app" in channels_for(preferences, notice.event_type):
            session.add(
                _notification(recipient, notice.event_id, notice.event_type, notice.envelope)
            )
            added += 1
    return added


def _includes(audience: Audience, recipient: Recipient) -> bool:
    in_org = audience.org_id is None or audience.org_id == recipient.org_id
    return in_org and not recipient.role_set.isdisjoint(audience.roles)


def _notification(recipient: Recipient, event_id: str, event_type: str, body: str) -> Notification:
    return Notification(
        event_id=event_id,
        event_type=event_type,
        user_id=recipient.user_id,
        org_id=recipient.org_id,
        envelope=body,
    )


def _delivery(channel: str, target: str, org_id: str, envelope: Envelope, body: str) -> Delivery:
    return Delivery(
        channel=channel,
        target=target,
        org_id=org_id,
        event_id=envelope.id,
        event_type=envelope.type,
        envelope=body,
    )


async def _org_active(session: AsyncSession, org_id: str | None) -> bool:
    if org_id is None:
        return True
    state = await session.get(OrganizationState, org_id)
    return state is None or state.active


async def _recipients(session: AsyncSession, audiences: list[Audience]) -> list[Recipient]:
    chosen: dict[str, Recipient] = {}
    for audience in audiences:
        query = select(Recipient).where(col(Recipient.active).is_(True))
        if audience.org_id is not None:
            query = query.where(Recipient.org_id == audience.org_id)
        for recipient in (await session.exec(query)).all():
            if _includes(audience, recipient):
                chosen.setdefault(recipient.user_id, recipient)
    return list(chosen.values())


async def _subscriptions(
    session: AsyncSession, audiences: list[Audience], event_type: str
) -> list[WebhookSubscription]:
    orgs = {a.org_id for a in audiences if a.gets_webhooks and a.org_id is not None}
    if not orgs:
        return []
    query = select(WebhookSubscription).where(
        col(WebhookSubscription.org_id).in_(orgs),
        col(WebhookSubscription.active).is_(True),
        col(WebhookSubscription.deleted_at).is_(None),
    )
    return [
        s
        for s in (await session.exec(query)).all()
        if event_type in s.event_type_list or "*" in s.event_type_list
    ]
