"""From one event to its notifications and deliveries, in the consumer's transaction."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.db import after_commit
from nrm.events import Envelope, Event
from services.notify.models import (
    Delivery,
    Notification,
    OrganizationState,
    Recipient,
    WebhookSubscription,
)
from services.notify.preferences import channels_for, preferences_of
from services.notify.routing import Audience, audiences_for

# Set on the database's session info by the delivery worker, so new rows wake it.
WAKE_DELIVERIES = "nrm.notify.wake"


async def fan_out(session: AsyncSession, event: Event, envelope: Envelope) -> None:
    body = envelope.to_json().decode()
    audiences = [a for a in audiences_for(event) if await _org_active(session, a.org_id)]
    for recipient in await _recipients(session, audiences):
        channels = channels_for(await preferences_of(session, recipient.org_id), envelope.type)
        if "in_app" in channels:
            session.add(
                Notification(
                    event_id=envelope.id,
                    event_type=envelope.type,
                    user_id=recipient.user_id,
                    org_id=recipient.org_id,
                    envelope=body,
                )
            )
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
            if not recipient.role_set.isdisjoint(audience.roles):
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
