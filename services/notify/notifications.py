"""In-app notifications: a user's own, newest first, rendered in their language when read."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.clock import utcnow
from nrm.errors import NotFound
from nrm.events import parse_data, parse_envelope
from nrm.paging import decode_cursor, encode_cursor
from services.notify.messages import context_for, language_of, render
from services.notify.models import Notification, Recipient
from services.notify.routing import EVENT_CLASSES
from services.notify.schemas import NotificationPublic


async def list_notifications(
    session: AsyncSession,
    principal: Principal,
    *,
    unread: bool,
    limit: int,
    cursor: str | None,
) -> tuple[list[Notification], str | None]:
    query = select(Notification).where(
        Notification.user_id == principal.subject, Notification.org_id == principal.org
    )
    if unread:
        query = query.where(col(Notification.read_at).is_(None))
    if cursor is not None:
        query = query.where(col(Notification.id) < decode_cursor(cursor))
    rows = list(
        (await session.exec(query.order_by(col(Notification.id).desc()).limit(limit + 1))).all()
    )
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(rows[limit - 1].id)


async def mark_read(
    session: AsyncSession, principal: Principal, notification_id: str
) -> Notification:
    notification = await session.get(Notification, notification_id)
    if (
        notification is None
        or notification.user_id != principal.subject
        or notification.org_id != principal.org
    ):
        raise NotFound("No such notification.")
    if notification.read_at is None:
        notification.read_at = utcnow()
        session.add(notification)
    return notification


async def reader_language(session: AsyncSession, principal: Principal) -> str:
    recipient = await session.get(Recipient, principal.subject)
    return language_of(recipient.language if recipient else None)


def to_public(notification: Notification, language: str, console_url: str) -> NotificationPublic:
    envelope = parse_envelope(notification.envelope.encode())
    event = parse_data(envelope, EVENT_CLASSES[envelope.type])
    context = context_for(event, envelope, console_url)
    message = render(envelope.type, language, context)
    return NotificationPublic(
        id=notification.id,
        event_id=notification.event_id,
        event_type=notification.event_type,
        subject=envelope.subject,
        title=message.title,
        body=message.body,
        link=context["link"],
        language=language,
        created_at=notification.created_at,
        read_at=notification.read_at,
    )
