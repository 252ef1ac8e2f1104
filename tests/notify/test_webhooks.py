"""Webhooks: signed CloudEvents to partner systems, retried, disabled on 410, never private."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from sqlmodel import select
from standardwebhooks import Webhook

from gateway.keys import SigningKeys
from nrm.settings import Settings
from services.notify.models import Delivery, WebhookSubscription
from tests.notify.conftest import SHELTER, Notify, notify_running, referral_created
from tests.notify.receiver import receiving
from tests.support import eventually

SUBSCRIPTIONS = "/api/v1/notify/subscriptions"


async def _delivery_in(notify: Notify, subscription_id: str, status: str) -> dict[str, Any] | None:
    for delivery in await notify.deliveries(subscription_id):
        if delivery["status"] == status:
            return delivery
    return None


async def test_referral_reaches_the_receiving_orgs_webhook_signed_and_verifiable(
    notify: Notify,
) -> None:
    async with receiving() as receiver:
        subscription = await notify.subscribe(receiver.url)
        sent = await notify.publish(referral_created())
        await asyncio.wait_for(receiver.arrived.wait(), 5)

    request = receiver.requests[0]
    payload = Webhook(subscription["secret"]).verify(request.body, request.headers)
    assert payload["id"] == sent.id
    assert payload["type"] == "nrm.referral.referral.created.v1"
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    event = JSONFormat().read(None, request.body)
    assert event.get_specversion() == "1.0"
    assert event.get_source() == "/nrm/referral"


async def test_a_forged_signature_does_not_verify_with_another_secret(notify: Notify) -> None:
    async with receiving() as receiver:
        await notify.subscribe(receiver.url)
        other = await notify.subscribe(receiver.url, ["nrm.fund.request.approved.v1"])
        await notify.publish(referral_created())
        await asyncio.wait_for(receiver.arrived.wait(), 5)
    request = receiver.requests[0]
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(other["secret"]).verify(request.body, request.headers)


async def test_a_failing_receiver_is_retried_until_it_answers_2xx(notify: Notify) -> None:
    async with receiving(statuses=[500, 503, 204]) as receiver:
        subscription = await notify.subscribe(receiver.url)
        await notify.publish(referral_created())
        delivered = await eventually(lambda: _delivery_in(notify, subscription["id"], "delivered"))
    assert delivered["attempts"] == 3
    assert delivered["last_status_code"] == 204
    assert len(receiver.requests) == 3
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1  # the same message each time, so the receiver can deduplicate


async def test_a_receiver_that_never_succeeds_is_given_up_after_max_attempts(
    notify: Notify,
) -> None:
    async with receiving(statuses=[500]) as receiver:
        subscription = await notify.subscribe(receiver.url)
        await notify.publish(referral_created())
        dead = await eventually(lambda: _delivery_in(notify, subscription["id"], "dead"))
    assert dead["attempts"] == 4  # NRM_NOTIFY_MAX_ATTEMPTS in these tests
    assert len(receiver.requests) == 4


async def test_a_410_answer_disables_the_subscription(notify: Notify) -> None:
    async with receiving(statuses=[410]) as receiver:
        subscription = await notify.subscribe(receiver.url)
        await notify.publish(referral_created())
        await eventually(lambda: _delivery_in(notify, subscription["id"], "dead"))
        later = await notify.publish(referral_created())
        await notify.fanned_out(later)
        assert await notify.deliveries_of(later) == [], "none made for a disabled subscription"

    answer = await notify.client.get(
        f"{SUBSCRIPTIONS}/{subscription['id']}", headers=notify.token()
    )
    assert answer.json()["active"] is False
    assert answer.json()["disabled_reason"] == "receiver_gone"
    assert len(receiver.requests) == 1


async def test_a_dead_delivery_can_be_sent_again_by_hand(notify: Notify) -> None:
    async with receiving(statuses=[500, 500, 500, 500, 200]) as receiver:
        subscription = await notify.subscribe(receiver.url)
        await notify.publish(referral_created())
        dead = await eventually(lambda: _delivery_in(notify, subscription["id"], "dead"))
        again = await notify.client.post(
            f"{SUBSCRIPTIONS}/{subscription['id']}/deliveries/{dead['id']}/redeliver",
            headers=notify.token(),
        )
        assert again.status_code == 202, again.text
        delivered = await eventually(lambda: _delivery_in(notify, subscription["id"], "delivered"))
    assert delivered["id"] == dead["id"]
    assert len(receiver.requests) == 5


async def test_a_hanging_receiver_does_not_delay_the_others(
    settings: Settings,
    signing_keys: SigningKeys,
    notify_env: None,
    allowlist: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No webhook times out within the test, so nothing depends on how fast this machine is:
    # the hanging receiver keeps every request it gets, and the other must be served anyway.
    monkeypatch.setenv("NRM_NOTIFY_WEBHOOK_TIMEOUT_SECONDS", "60")
    settings = settings.model_copy(update={"notify_webhook_allowlist": allowlist})
    async with (
        receiving(delay=120) as hanging,
        receiving() as healthy,
        notify_running(settings, signing_keys) as notify,
    ):
        await notify.subscribe(hanging.url)
        fast = await notify.subscribe(healthy.url)
        for _ in range(10):
            await notify.publish(referral_created())

        await eventually(lambda: _all_delivered(notify, fast["id"], 10))

        # The hanging receiver holds its own slots (4 by default), not one more, and
        # nothing it holds was let go: the other's ten went past it, not after it.
        assert len(hanging.requests) == 4
        assert len(healthy.requests) == 10


async def _all_delivered(notify: Notify, subscription_id: str, count: int) -> bool | None:
    rows = await notify.deliveries(subscription_id)
    delivered = [d for d in rows if d["status"] == "delivered"]
    return True if len(delivered) == count else None


async def test_duplicate_events_produce_one_delivery(notify: Notify) -> None:
    event = referral_created()
    async with receiving() as receiver:
        subscription = await notify.subscribe(receiver.url)
        await notify.publish(event, event_id="dup-1")
        await notify.publish(event, event_id="dup-1")
        await eventually(lambda: _delivery_in(notify, subscription["id"], "delivered"))
        await asyncio.sleep(0.3)
    assert len(await notify.deliveries(subscription["id"])) == 1
    assert len(receiver.requests) == 1


async def test_the_secret_is_answered_once_and_stored_only_sealed(notify: Notify) -> None:
    subscription = await notify.subscribe("http://127.0.0.1:9/hook")
    assert subscription["secret"].startswith("whsec_")
    shown = await notify.client.get(f"{SUBSCRIPTIONS}/{subscription['id']}", headers=notify.token())
    listed = await notify.client.get(SUBSCRIPTIONS, headers=notify.token())
    assert "secret" not in shown.json()
    assert listed.json()["items"], "the subscription is listed"
    assert all("secret" not in item for item in listed.json()["items"])
    async with notify.db.transaction() as session:
        stored = await session.get(WebhookSubscription, subscription["id"])
    assert stored is not None
    assert subscription["secret"] not in stored.secret
    assert subscription["secret"].removeprefix("whsec_") not in stored.secret


async def test_a_replayed_create_does_not_answer_the_secret_again(notify: Notify) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}
    headers = notify.token() | {"Idempotency-Key": "k-1"}
    first = await notify.client.post(SUBSCRIPTIONS, json=body, headers=headers)
    second = await notify.client.post(SUBSCRIPTIONS, json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["secret"].startswith("whsec_")
    assert second.json()["secret"] is None
    assert second.json()["id"] == first.json()["id"]


async def test_other_organisations_webhooks_get_nothing(notify: Notify) -> None:
    async with receiving() as mine, receiving() as theirs:
        await notify.subscribe(mine.url)
        await notify.subscribe(theirs.url, org="org-elsewhere")
        await notify.publish(referral_created(to_org=SHELTER))
        await asyncio.wait_for(mine.arrived.wait(), 5)
        await asyncio.sleep(0.3)
    assert theirs.requests == []


async def test_a_deleted_subscription_receives_nothing_more(notify: Notify) -> None:
    async with receiving() as receiver:
        subscription = await notify.subscribe(receiver.url)
        deleted = await notify.client.delete(
            f"{SUBSCRIPTIONS}/{subscription['id']}", headers=notify.token()
        )
        assert deleted.status_code == 204
        envelope = await notify.publish(referral_created())
        await notify.fanned_out(envelope)
        assert await notify.deliveries_of(envelope) == []
    assert receiver.requests == []
    gone = await notify.client.get(f"{SUBSCRIPTIONS}/{subscription['id']}", headers=notify.token())
    assert gone.status_code == 404


async def test_the_webhook_body_is_the_thin_cloudevent_and_nothing_more(notify: Notify) -> None:
    async with receiving() as receiver:
        await notify.subscribe(receiver.url)
        await notify.publish(referral_created())
        await asyncio.wait_for(receiver.arrived.wait(), 5)
    body = json.loads(receiver.requests[0].body)
    assert set(body["data"]) == {
        "referral_id",
        "case_id",
        "from_org",
        "to_org",
        "service_type",
        "urgency",
        "due_at",
    }


async def test_deliveries_are_logged_per_attempt(notify: Notify) -> None:
    async with receiving(statuses=[502, 200]) as receiver:
        subscription = await notify.subscribe(receiver.url)
        await notify.publish(referral_created())
        await eventually(lambda: _delivery_in(notify, subscription["id"], "delivered"))
    from services.notify.models import DeliveryAttempt

    async with notify.db.transaction() as session:
        delivery = (await session.exec(select(Delivery))).one()
        attempts = (await session.exec(select(DeliveryAttempt))).all()
    assert [a.outcome for a in sorted(attempts, key=lambda a: a.id)] == ["retry", "delivered"]
    assert {a.delivery_id for a in attempts} == {delivery.id}
    assert len(receiver.requests) == 2
