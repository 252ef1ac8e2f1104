"""The full path on real infrastructure: an event on RabbitMQ becomes a signed webhook call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from gateway.keys import SigningKeys
from nrm.settings import Settings
from tests.notify.conftest import notify_running, referral_created
from tests.notify.receiver import receiving
from tests.support import PostgresDatabases


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_a_referral_on_rabbitmq_reaches_the_shelters_webhook_once(
    tmp_path: Path,
    isolated_rabbit_url: str,
    postgres: PostgresDatabases,
    signing_keys: SigningKeys,
    notify_env: None,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        broker_url=isolated_rabbit_url,
        notify_database_url=await postgres.create("notify"),
        notify_webhook_allowlist="127.0.0.1",
        _env_file=None,
    )
    async with notify_running(settings, signing_keys) as notify, receiving() as receiver:
        subscription = await notify.subscribe(receiver.url)
        sent = await notify.publish(referral_created())
        await notify.publish(referral_created(), event_id=sent.id)  # redelivered: still one call
        await asyncio.wait_for(receiver.arrived.wait(), 5)
        await asyncio.sleep(0.5)

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    payload = Webhook(subscription["secret"]).verify(request.body, request.headers)
    assert payload["id"] == sent.id
    assert payload["data"]["to_org"] == "org-shelter"
