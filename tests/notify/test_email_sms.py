"""E-mail over a real SMTP server and SMS through a real HTTP gateway, in the user's language."""

from __future__ import annotations

import asyncio
import email
import json
import socket
from collections.abc import Iterator
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.notify.models import Preferences
from services.notify.preferences import quiet_until
from tests.notify.conftest import SHELTER, Notify, referral_created
from tests.notify.receiver import receiving
from tests.notify.samples import REVEALING
from tests.support import eventually


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        self.messages.append(email.message_from_bytes(envelope.content, policy=default))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def mailbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("NRM_NOTIFY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NRM_NOTIFY_SMTP_PORT", str(port))
    monkeypatch.setenv("NRM_NOTIFY_SMTP_SECURITY", "none")
    try:
        yield box
    finally:
        controller.stop()


async def _set_contact(notify: Notify, user_id: str, **contact: Any) -> None:
    answer = await notify.client.put(
        "/api/v1/notify/me/contact",
        json=contact,
        headers=notify.token(roles=("provider",), subject=user_id),
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture
def notify_env(monkeypatch: pytest.MonkeyPatch, mailbox: Mailbox) -> None:
    from tests.notify.conftest import FAST

    for name, value in FAST.items():
        monkeypatch.setenv(name, value)


async def test_a_referral_e_mail_reaches_the_shelter_in_tajik_without_personal_data(
    notify: Notify, mailbox: Mailbox
) -> None:
    await notify.add_user("u-tg", language="tg")
    await _set_contact(notify, "u-tg", email="shelter.staff@example.org")
    event = referral_created()
    await notify.publish(event)

    await eventually(lambda: _first(mailbox.messages))
    message = mailbox.messages[0]
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    assert mailbox.recipients == [["shelter.staff@example.org"]]
    assert message["Content-Language"] == "tg"
    assert str(message["Subject"]).startswith("Роҳхати нав")
    assert str(event.referral_id) in text
    assert not any(value in text for value in REVEALING)


async def test_users_of_other_roles_or_organisations_get_no_e_mail(
    notify: Notify, mailbox: Mailbox
) -> None:
    await notify.add_user("u-fund", roles=("fund_officer",))
    await notify.add_user("u-other", org="org-elsewhere")
    await _set_contact(notify, "u-fund", email="fund@example.org")
    await notify.add_user("u-en", language="en")
    await _set_contact(notify, "u-en", email="en@example.org")
    await notify.publish(referral_created())
    await eventually(lambda: _first(mailbox.messages))
    await asyncio.sleep(0.3)
    assert mailbox.recipients == [["en@example.org"]]
    assert str(mailbox.messages[0]["Subject"]).startswith("New referral")


async def test_without_an_smtp_server_e_mails_are_written_as_eml_files(
    notify: Notify, monkeypatch: pytest.MonkeyPatch
) -> None:
    channels = notify.app.state.notify_channels
    object.__setattr__(channels.config, "smtp_host", None)  # the embedded default
    await notify.add_user("u-ru", language="ru")
    await _set_contact(notify, "u-ru", email="ru@example.org")
    await notify.publish(referral_created())
    mail_dir: Path = channels.mail_dir
    written = await eventually(lambda: _first(list(mail_dir.glob("*.eml"))))
    message = email.message_from_bytes(written.read_bytes(), policy=default)
    assert message["Content-Language"] == "ru"
    assert str(message["Subject"]).startswith("Новое направление")


async def test_sms_goes_through_the_gateway_when_the_organisation_chose_it(
    notify: Notify,
) -> None:
    async with receiving() as gateway:
        channels = notify.app.state.notify_channels
        object.__setattr__(channels.config, "sms_gateway_url", gateway.url)
        object.__setattr__(channels.config, "sms_senders", {"TJ": "NRM-TJ", "*": "OpenNRM"})
        await notify.add_user("u-sms", language="en")
        await _set_contact(notify, "u-sms", phone="+992900000001", country="TJ")
        chosen = await notify.client.put(
            "/api/v1/notify/preferences",
            json={"channels": {"*": ["in_app", "sms"]}},
            headers=notify.token(roles=("system",)),
        )
        assert chosen.status_code == 200, chosen.text
        await notify.publish(referral_created())
        await asyncio.wait_for(gateway.arrived.wait(), 5)
    sent = json.loads(gateway.requests[0].body)
    assert sent["to"] == "+992900000001"
    assert sent["from"] == "NRM-TJ"
    assert sent["text"].startswith("New referral")


async def test_sms_is_off_by_default(notify: Notify) -> None:
    async with receiving() as gateway:
        await notify.add_user("u-sms", language="en")
        await _set_contact(notify, "u-sms", phone="+992900000001", country="TJ")
        envelope = await notify.publish(referral_created())
        await notify.fanned_out(envelope)
        made = await notify.deliveries_of(envelope)
    assert [d.channel for d in made if d.channel == "sms"] == []
    assert gateway.requests == []


def test_sms_quiet_hours_postpone_to_their_end() -> None:
    from datetime import UTC, datetime

    preferences = Preferences(
        org_id=SHELTER, channels="{}", quiet_start=22, quiet_end=7, timezone="Asia/Dushanbe"
    )
    late = datetime(2026, 11, 28, 18, 30, tzinfo=UTC)  # 23:30 in Dushanbe (UTC+5)
    noon = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    assert quiet_until(preferences, late) == datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    assert quiet_until(preferences, noon) is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _first(items: list[Any]) -> Any:
    return items[0] if items else None
