"""One attempt at one delivery over its channel: render if needed, then call the adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nrm.events import parse_data, parse_envelope
from services.notify.channels.email import email_message, send_email
from services.notify.channels.outcome import Outcome
from services.notify.channels.sms import send_sms
from services.notify.channels.webhook import send_webhook
from services.notify.messages import context_for, language_of, render
from services.notify.models import Recipient, WebhookSubscription
from services.notify.routing import EVENT_CLASSES
from services.notify.signing import unseal

if TYPE_CHECKING:
    from services.notify.delivery import Channels


@dataclass(frozen=True)
class Job:
    """A leased delivery with what sending it needs, read in the lease's transaction."""

    delivery_id: str
    channel: str
    envelope: str
    subscription: WebhookSubscription | None
    recipient: Recipient | None


async def send(channels: Channels, job: Job) -> Outcome:
    if job.channel == "webhook":
        subscription = job.subscription
        if subscription is None or not subscription.active or subscription.deleted_at:
            return Outcome(delivered=False, error="subscription_inactive", final=True)
        return await send_webhook(
            channels.http,
            url=subscription.url,
            secret=unseal(subscription.secret, channels.secret_key, subscription.id),
            # The same id on every retry, so a receiver can deduplicate (Standard Webhooks).
            message_id=f"msg_{job.delivery_id}",
            body=job.envelope.encode(),
            allowlist=channels.allowlist,
            require_https=channels.require_https,
        )
    recipient = job.recipient
    if recipient is None or not recipient.active:
        return Outcome(delivered=False, error="recipient_inactive", final=True)
    envelope = parse_envelope(job.envelope.encode())
    event = parse_data(envelope, EVENT_CLASSES[envelope.type])
    language = language_of(recipient.language)
    message = render(
        envelope.type, language, context_for(event, envelope, channels.config.console_url)
    )
    if job.channel == "email" and recipient.email:
        email = email_message(
            channels.config,
            to=recipient.email,
            language=language,
            message=message,
            message_id=job.delivery_id,
        )
        return await send_email(channels.config, channels.mail_dir, email)
    if job.channel == "sms" and recipient.phone:
        return await send_sms(
            channels.http,
            channels.config,
            to=recipient.phone,
            country=recipient.country,
            message=message,
        )
    return Outcome(delivered=False, error="no_address", final=True)
