"""Staff contact addresses, registered in notify (the gateway keeps identities, not contacts)."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from nrm.auth import Principal
from nrm.errors import NotFound
from services.notify.models import Recipient
from services.notify.schemas import ContactUpdate


async def own_recipient(session: AsyncSession, principal: Principal) -> Recipient:
    """The caller as a recipient; created from the token if the gateway's event is not in yet."""
    recipient = await session.get(Recipient, principal.subject)
    if recipient is None or recipient.org_id != principal.org:
        if recipient is not None:
            raise NotFound("No such recipient.")
        recipient = Recipient(
            user_id=principal.subject, org_id=principal.org, roles=" ".join(sorted(principal.roles))
        )
    return recipient


async def recipient_of(session: AsyncSession, user_id: str) -> Recipient:
    recipient = await session.get(Recipient, user_id)
    if recipient is None:
        raise NotFound("No such recipient.")
    return recipient


def set_contact(session: AsyncSession, recipient: Recipient, update: ContactUpdate) -> Recipient:
    recipient.email = update.email
    recipient.phone = update.phone
    recipient.country = update.country
    session.add(recipient)
    return recipient
