"""Webhook subscriptions of partner systems (Standard Webhooks 1.0), and their deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlmodel import col, select

from nrm.db import SessionDep
from nrm.idempotency import IdempotencyDep
from nrm.paging import Cursor, Limit, Page, keyset_page
from services.notify import subscriptions
from services.notify.dependencies import ChannelsDep, Manager
from services.notify.models import Delivery, WebhookSubscription
from services.notify.schemas import (
    DeliveryPublic,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPublic,
)

router = APIRouter(prefix="/subscriptions", tags=["webhooks"])
OrgQuery = Annotated[str | None, Query(max_length=100, description="Admin only: one org.")]


@router.post("", status_code=201)
async def create_subscription(
    body: SubscriptionCreate,
    principal: Manager,
    session: SessionDep,
    channels: ChannelsDep,
    idempotency: IdempotencyDep,
) -> SubscriptionCreated:
    """Subscribe a URL to event types; the answer carries the signing secret, once."""
    subscription, secret = await subscriptions.create_subscription(
        session,
        channels,
        org_id=subscriptions.acting_org(principal, body.org_id),
        url=body.url,
        event_types=body.event_types,
    )
    public = _public(subscription)
    # A replay must not hand out the secret again: it is stored only sealed.
    await idempotency.remember(session, SubscriptionCreated(**public.model_dump(), secret=None))
    return SubscriptionCreated(**public.model_dump(), secret=secret)


@router.get("")
async def list_subscriptions(
    principal: Manager,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    org_id: OrgQuery = None,
) -> Page[SubscriptionPublic]:
    query = subscriptions.subscriptions_query(principal, org_id)
    rows, next_cursor = await keyset_page(
        session, query, col(WebhookSubscription.id), limit=limit, cursor=cursor
    )
    return Page(items=[_public(s) for s in rows], next_cursor=next_cursor)


@router.get("/{subscription_id}")
async def get_subscription(
    subscription_id: str, principal: Manager, session: SessionDep
) -> SubscriptionPublic:
    return _public(await subscriptions.visible_subscription(session, principal, subscription_id))


@router.delete("/{subscription_id}", status_code=204)
async def delete_subscription(
    subscription_id: str, principal: Manager, session: SessionDep
) -> Response:
    await subscriptions.delete_subscription(session, principal, subscription_id)
    return Response(status_code=204)


@router.post("/{subscription_id}/enable")
async def enable_subscription(
    subscription_id: str, principal: Manager, session: SessionDep
) -> SubscriptionPublic:
    """Turn a subscription back on after its receiver answered 410 and was fixed."""
    return _public(await subscriptions.enable_subscription(session, principal, subscription_id))


@router.get("/{subscription_id}/deliveries")
async def list_deliveries(
    subscription_id: str,
    principal: Manager,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeliveryPublic]:
    subscription = await subscriptions.visible_subscription(session, principal, subscription_id)
    query = select(Delivery).where(Delivery.subscription_id == subscription.id)
    rows, next_cursor = await keyset_page(
        session, query, col(Delivery.id), limit=limit, cursor=cursor
    )
    return Page(items=[_delivery(d) for d in rows], next_cursor=next_cursor)


@router.post("/{subscription_id}/deliveries/{delivery_id}/redeliver", status_code=202)
async def redeliver(
    subscription_id: str, delivery_id: str, principal: Manager, session: SessionDep
) -> DeliveryPublic:
    """Send one delivery again now (e.g. after the receiver was fixed)."""
    return _delivery(
        await subscriptions.redeliver(session, principal, subscription_id, delivery_id)
    )


def _public(subscription: WebhookSubscription) -> SubscriptionPublic:
    return SubscriptionPublic(
        id=subscription.id,
        org_id=subscription.org_id,
        url=subscription.url,
        event_types=subscription.event_type_list,
        active=subscription.active,
        disabled_reason=subscription.disabled_reason,
        created_at=subscription.created_at,
    )


def _delivery(delivery: Delivery) -> DeliveryPublic:
    pending = delivery.status == "pending"
    return DeliveryPublic(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at if pending else None,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
    )
