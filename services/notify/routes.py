"""Notify's HTTP routes: in-app notifications, contacts, preferences, diagnostics."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from nrm.auth import CurrentPrincipal
from nrm.db import SessionDep
from nrm.errors import NotFound
from nrm.paging import Cursor, Limit, Page
from services.notify import contacts, notifications, preferences
from services.notify.dependencies import Admin, ChannelsDep, Manager
from services.notify.models import PingReceipt, Recipient
from services.notify.schemas import (
    ContactPublic,
    ContactUpdate,
    NotificationPublic,
    PingReceiptPublic,
    PreferencesBody,
    PreferencesPublic,
)
from services.notify.subscriptions import acting_org

router = APIRouter()
OrgQuery = Annotated[str | None, Query(max_length=100, description="Admin only: another org.")]


@router.get("/diagnostics/pings/{ping_id}", tags=["diagnostics"])
async def get_ping_receipt(ping_id: UUID, _: Admin, session: SessionDep) -> PingReceiptPublic:
    """Whether a ping sent from intake has arrived here, and when."""
    receipt = await session.get(PingReceipt, str(ping_id))
    if receipt is None:
        raise NotFound("No such ping has arrived.")
    return PingReceiptPublic.model_validate(receipt, from_attributes=True)


@router.get("/notifications", tags=["notifications"])
async def list_notifications(
    principal: CurrentPrincipal,
    session: SessionDep,
    channels: ChannelsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    unread: bool = False,
) -> Page[NotificationPublic]:
    """The caller's own notifications, newest first."""
    rows, next_cursor = await notifications.list_notifications(
        session, principal, unread=unread, limit=limit, cursor=cursor
    )
    language = await notifications.reader_language(session, principal)
    items = [notifications.to_public(n, language, channels.config.console_url) for n in rows]
    return Page(items=items, next_cursor=next_cursor)


@router.post("/notifications/{notification_id}/read", tags=["notifications"])
async def read_notification(
    notification_id: str, principal: CurrentPrincipal, session: SessionDep, channels: ChannelsDep
) -> NotificationPublic:
    notification = await notifications.mark_read(session, principal, notification_id)
    language = await notifications.reader_language(session, principal)
    return notifications.to_public(notification, language, channels.config.console_url)


@router.get("/me/contact", tags=["contacts"])
async def get_own_contact(principal: CurrentPrincipal, session: SessionDep) -> ContactPublic:
    return _contact(await contacts.own_recipient(session, principal))


@router.put("/me/contact", tags=["contacts"])
async def set_own_contact(
    body: ContactUpdate, principal: CurrentPrincipal, session: SessionDep
) -> ContactPublic:
    """The caller's e-mail and phone for notifications (staff contact data, never shared)."""
    recipient = await contacts.own_recipient(session, principal)
    return _contact(contacts.set_contact(session, recipient, body))


@router.put("/recipients/{user_id}/contact", tags=["contacts"])
async def set_contact(
    user_id: str, body: ContactUpdate, _: Admin, session: SessionDep
) -> ContactPublic:
    recipient = await contacts.recipient_of(session, user_id)
    return _contact(contacts.set_contact(session, recipient, body))


@router.get("/preferences", tags=["preferences"])
async def get_preferences(
    principal: CurrentPrincipal, session: SessionDep, org_id: OrgQuery = None
) -> PreferencesPublic:
    org = acting_org(principal, org_id, where="query")
    return preferences.to_public(await preferences.preferences_of(session, org))


@router.put("/preferences", tags=["preferences"])
async def set_preferences(
    body: PreferencesBody, principal: Manager, session: SessionDep, org_id: OrgQuery = None
) -> PreferencesPublic:
    """Channels per event type for the organisation's users, and SMS quiet hours."""
    org = acting_org(principal, org_id, where="query")
    return preferences.to_public(await preferences.set_preferences(session, org, body))


def _contact(recipient: Recipient) -> ContactPublic:
    return ContactPublic.model_validate(recipient, from_attributes=True)
