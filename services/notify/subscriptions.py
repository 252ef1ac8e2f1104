"""Webhook subscriptions of partner organisations, and their deliveries."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from nrm.auth import Principal
from nrm.clock import utcnow
from nrm.db import after_commit
from nrm.errors import Conflict, NotFound
from services.notify.delivery import Channels
from services.notify.fanout import WAKE_DELIVERIES
from services.notify.models import Delivery, WebhookSubscription, new_id
from services.notify.outbound import RefusedTarget, resolve_target
from services.notify.problems import invalid_field
from services.notify.routing import EVENT_TYPES
from services.notify.signing import new_secret, seal

MANAGERS = ("admin", "system")


def acting_org(principal: Principal, requested: str | None, *, where: str = "body") -> str:
    """The caller's organisation; the platform admin may act for another one."""
    if requested is None or requested == principal.org:
        return principal.org
    if principal.has_role("admin"):
        return requested
    raise invalid_field("org_id", "Only an admin may act for another organisation.", where=where)


async def create_subscription(
    session: AsyncSession,
    channels: Channels,
    *,
    org_id: str,
    url: str,
    event_types: list[str],
) -> tuple[WebhookSubscription, str]:
    unknown = [t for t in event_types if t != "*" and t not in EVENT_TYPES]
    if unknown:
        raise invalid_field("event_types", "Unknown event type; see the event catalogue.")
    try:
        await resolve_target(url, channels.allowlist, require_https=channels.require_https)
    except RefusedTarget as refused:
        raise invalid_field("url", str(refused)) from None
    subscription = WebhookSubscription(
        id=new_id(),
        org_id=org_id,
        url=url,
        event_types=" ".join(sorted(set(event_types))),
        secret="",
    )
    secret = new_secret()
    subscription.secret = seal(secret, channels.secret_key, subscription.id)
    session.add(subscription)
    return subscription, secret


async def visible_subscription(
    session: AsyncSession, principal: Principal, subscription_id: str
) -> WebhookSubscription:
    found = await session.get(WebhookSubscription, subscription_id)
    if (
        found is None
        or found.deleted_at is not None
        or not (found.org_id == principal.org or principal.has_role("admin"))
    ):
        raise NotFound("No such subscription.")
    return found


async def delete_subscription(
    session: AsyncSession, principal: Principal, subscription_id: str
) -> None:
    subscription = await visible_subscription(session, principal, subscription_id)
    subscription.deleted_at = utcnow()
    subscription.active = False
    session.add(subscription)


def subscriptions_query(
    principal: Principal, org_id: str | None
) -> SelectOfScalar[WebhookSubscription]:
    query = select(WebhookSubscription).where(col(WebhookSubscription.deleted_at).is_(None))
    if principal.has_role("admin"):
        return query.where(WebhookSubscription.org_id == org_id) if org_id else query
    return query.where(WebhookSubscription.org_id == principal.org)


async def redeliver(
    session: AsyncSession, principal: Principal, subscription_id: str, delivery_id: str
) -> Delivery:
    """Send a delivery again now, whatever became of it (e.g. after the receiver was fixed)."""
    subscription = await visible_subscription(session, principal, subscription_id)
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None or delivery.subscription_id != subscription.id:
        raise NotFound("No such delivery.")
    if not subscription.active:
        raise Conflict("The subscription is disabled; enable it first.")
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    session.add(delivery)
    _wake(session)
    return delivery


async def enable_subscription(
    session: AsyncSession, principal: Principal, subscription_id: str
) -> WebhookSubscription:
    subscription = await visible_subscription(session, principal, subscription_id)
    subscription.active = True
    subscription.disabled_reason = None
    session.add(subscription)
    return subscription


def _wake(session: AsyncSession) -> None:
    waker = session.info.get(WAKE_DELIVERIES)
    if waker is not None:
        after_commit(session, waker)
