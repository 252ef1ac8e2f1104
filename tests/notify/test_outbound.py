"""SSRF: webhooks never reach private, loopback or link-local addresses unless allow-listed."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlmodel import select

from nrm.db import Database
from services.notify.models import Delivery
from services.notify.outbound import Allowlist, RefusedTarget, resolve_target
from services.notify.subscriptions import create_subscription
from tests.notify.conftest import SHELTER, Notify, referral_created
from tests.notify.receiver import receiving
from tests.support import eventually

PRIVATE_URLS = [
    "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[64:ff9b::7f00:1]/hook",
    "http://[64:ff9b:1::7f00:1]/hook",
    "http://[::127.0.0.1]/hook",
    "http://[::ffff:0:7f00:1]/hook",
    "http://[2002:a00:1::1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://0.0.0.0/hook",
    "http://localhost/hook",
    "http://LOCALHOST./hook",
]
NOTHING = Allowlist.parse("")


@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_private_loopback_and_link_local_targets_are_refused(url: str) -> None:
    with pytest.raises(RefusedTarget):
        await resolve_target(url, NOTHING, require_https=False)


@pytest.mark.parametrize(
    ("url", "allowlist"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1"),
        ("http://10.1.2.3/hook", "10.0.0.0/8"),
        ("http://[::1]/hook", "::1"),
        ("http://localhost/hook", "localhost"),
    ],
)
async def test_an_allow_listed_host_or_network_is_reachable(url: str, allowlist: str) -> None:
    target = await resolve_target(url, Allowlist.parse(allowlist), require_https=False)
    assert not target.address.is_global


async def test_a_public_address_is_accepted_and_pinned() -> None:
    target = await resolve_target("https://93.184.215.14/hook?x=1", NOTHING, require_https=True)
    assert target.pinned_url == "https://93.184.215.14:443/hook?x=1"
    assert target.host_header == "93.184.215.14"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/hook",
        "file:///etc/passwd",
        "gopher://93.184.215.14/",
        "http://user:pass@93.184.215.14/hook",
        "http:///hook",
        "http://93.184.215.14:99999/hook",
        "not a url",
    ],
)
async def test_bad_schemes_and_shapes_are_refused(url: str) -> None:
    with pytest.raises(RefusedTarget):
        await resolve_target(url, NOTHING, require_https=False)


async def test_production_requires_https() -> None:
    with pytest.raises(RefusedTarget, match="https"):
        await resolve_target("http://93.184.215.14/hook", NOTHING, require_https=True)


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(RefusedTarget, match="resolve"):
        await resolve_target("http://nothing.invalid/hook", NOTHING, require_https=False)


@pytest.fixture
def allowlist() -> str:
    return ""  # these tests run notify with no allow-list at all


@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_subscribing_a_private_url_is_422_naming_the_url_field(
    notify: Notify, url: str
) -> None:
    answer = await notify.client.post(
        "/api/v1/notify/subscriptions",
        json={"url": url, "event_types": ["*"]},
        headers=notify.token(),
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["loc"] == ["body", "url"]
    assert url not in answer.text
    listed = await notify.client.get("/api/v1/notify/subscriptions", headers=notify.token())
    assert listed.json()["items"] == []


async def test_an_address_allowed_when_subscribing_is_refused_again_when_delivering(
    notify: Notify,
) -> None:
    """The allow-list shrank (or DNS changed) after subscribing: the delivery still refuses."""
    channels = notify.app.state.notify_channels
    then = replace(channels, allowlist=Allowlist.parse("127.0.0.1"))
    async with receiving() as receiver:
        async with notify.db.transaction() as session:
            subscription, _ = await create_subscription(
                session, then, org_id=SHELTER, url=receiver.url, event_types=["*"]
            )
        await notify.publish(referral_created())
        refused = await eventually(lambda: _attempted(notify.db))
    assert refused.last_error == "refused_address"
    assert refused.subscription_id == subscription.id
    assert receiver.requests == []


async def _attempted(db: Database) -> Delivery | None:
    async with db.transaction() as session:
        rows = (await session.exec(select(Delivery).where(Delivery.attempts > 0))).all()
    return rows[0] if rows else None
