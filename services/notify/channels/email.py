"""E-mail adapter: SMTP through aiosmtplib, or .eml files when no server is configured."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from services.notify.channels.outcome import Outcome
from services.notify.config import NotifyConfig
from services.notify.messages import Message


def email_message(
    config: NotifyConfig, *, to: str, language: str, message: Message, message_id: str
) -> EmailMessage:
    email = EmailMessage()
    email["From"] = config.mail_from
    email["To"] = to
    email["Subject"] = message.title
    email["X-NRM-Delivery"] = message_id
    email.set_content(message.body)
    email["Content-Language"] = language  # after set_content, which resets Content-* headers
    return email


async def send_email(config: NotifyConfig, mail_dir: Path, email: EmailMessage) -> Outcome:
    if config.smtp_host is None:
        await asyncio.to_thread(_write_eml, mail_dir, email)
        return Outcome(delivered=True)
    try:
        await aiosmtplib.send(
            email,
            hostname=config.smtp_host,
            port=config.smtp_port,
            username=config.smtp_username,
            password=config.smtp_password,
            use_tls=config.smtp_security == "tls",
            start_tls=config.smtp_security == "starttls",
            timeout=config.webhook_timeout_seconds,
        )
    except aiosmtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.code < 600
        return Outcome(delivered=False, status_code=exc.code, error="smtp_refused", final=permanent)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return Outcome(delivered=False, error=f"smtp:{type(exc).__name__}"[:200])
    return Outcome(delivered=True)


def _write_eml(mail_dir: Path, email: EmailMessage) -> None:
    mail_dir.mkdir(parents=True, exist_ok=True)
    name = str(email["X-NRM-Delivery"])
    # Written aside, then renamed: whoever watches the folder never reads half a message.
    partial = mail_dir / f".{name}.eml.part"
    partial.write_bytes(bytes(email))
    partial.replace(mail_dir / f"{name}.eml")
