"""In-app notifications: routed to the right users, once per event, in their language."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from gateway.events import OrganizationChanged, UserChanged
from nrm.clock import utcnow
from services.fund.events import RequestSubmitted, SourceLowBalance
from services.notify.fanout import NOTICE_WINDOW
from services.notify.models import OrganizationState, Recipient
from services.referral.events import ReferralDeclined, ReferralEscalated
from tests.notify.conftest import POLICE, SHELTER, Notify, referral_created
from tests.support import eventually

NOTIFICATIONS = "/api/v1/notify/notifications"


async def _inbox(notify: Notify, user_id: str, org: str = SHELTER, **params: Any) -> list[Any]:
    answer = await notify.client.get(
        NOTIFICATIONS, params=params, headers=notify.token(org=org, subject=user_id)
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


async def _some(notify: Notify, user_id: str, org: str = SHELTER) -> list[Any] | None:
    return await _inbox(notify, user_id, org) or None


async def test_a_referral_notifies_the_receiving_orgs_providers_in_their_language(
    notify: Notify,
) -> None:
    await notify.add_user("u-tg", language="tg")
    await notify.add_user("u-ru", language="ru", roles=("case_worker",))
    event = referral_created()
    await notify.publish(event)

    tg = (await eventually(lambda: _some(notify, "u-tg")))[0]
    ru = (await eventually(lambda: _some(notify, "u-ru")))[0]
    assert tg["title"].startswith("Роҳхати нав")
    assert ru["title"].startswith("Новое направление")
    assert tg["subject"] == str(event.referral_id)
    assert tg["link"].endswith(f"/#/referrals/{event.referral_id}")
    assert tg["read_at"] is None


async def test_duplicate_events_produce_one_notification(notify: Notify) -> None:
    await notify.add_user("u-1")
    event = referral_created()
    for _ in range(3):
        await notify.publish(event, event_id="same-event")
    await eventually(lambda: _some(notify, "u-1"))
    await asyncio.sleep(0.3)
    assert len(await _inbox(notify, "u-1")) == 1


async def test_a_decline_goes_to_the_referring_org_not_the_provider(notify: Notify) -> None:
    await notify.add_user("u-police", org=POLICE, roles=("intake_officer",))
    await notify.add_user("u-shelter")
    await notify.publish(
        ReferralDeclined(
            referral_id=uuid.uuid4(),
            case_id=uuid.uuid4(),
            from_org=POLICE,
            to_org=SHELTER,
            service_type="shelter",
            reason="no_capacity",
        )
    )
    declined = (await eventually(lambda: _some(notify, "u-police", POLICE)))[0]
    assert declined["event_type"] == "nrm.referral.referral.declined.v1"
    assert await _inbox(notify, "u-shelter") == []


async def test_an_escalation_reaches_commission_members_of_any_organisation(
    notify: Notify,
) -> None:
    await notify.add_user("u-comm-state", org="org-ministry", roles=("commission_member",))
    await notify.add_user("u-comm-ngo", org="org-ngo", roles=("commission_member",))
    await notify.publish(
        ReferralEscalated(
            referral_id=uuid.uuid4(),
            case_id=uuid.uuid4(),
            from_org=POLICE,
            service_type="shelter",
            level=2,
        )
    )
    await eventually(lambda: _some(notify, "u-comm-state", "org-ministry"))
    await eventually(lambda: _some(notify, "u-comm-ngo", "org-ngo"))


async def test_only_requests_above_the_threshold_reach_the_commission(notify: Notify) -> None:
    await notify.add_user("u-comm", org="org-ngo", roles=("commission_member",))
    await notify.add_user("u-fund", org="org-ministry", roles=("fund_officer",))

    def request(needs_commission: bool) -> RequestSubmitted:
        return RequestSubmitted(
            request_id=uuid.uuid4(),
            case_id=uuid.uuid4(),
            org_id=SHELTER,
            amount_minor=500_00,
            currency="TJS",
            purpose="shelter",
            needs_commission=needs_commission,
        )

    await notify.publish(request(needs_commission=False))
    await notify.publish(request(needs_commission=True))
    await eventually(
        lambda: _count(notify, "u-fund", "org-ministry", 2),
    )
    assert len(await _inbox(notify, "u-comm", "org-ngo")) == 1


async def _count(notify: Notify, user: str, org: str, n: int) -> bool | None:
    return True if len(await _inbox(notify, user, org)) == n else None


async def test_low_balance_reaches_fund_officers(notify: Notify) -> None:
    await notify.add_user("u-fund", org="org-ministry", roles=("fund_officer",))
    await notify.publish(
        SourceLowBalance(
            source_id=uuid.uuid4(), line_id=uuid.uuid4(), available_minor=10_00, currency="TJS"
        )
    )
    low = (await eventually(lambda: _some(notify, "u-fund", "org-ministry")))[0]
    assert "10.00 TJS" in low["body"]


async def test_deactivated_users_and_organisations_are_not_notified(notify: Notify) -> None:
    await notify.add_user("u-gone")
    await notify.add_user("u-other", org="org-closed")
    await notify.publish(
        UserChanged(
            user_id="u-gone", org_id=SHELTER, roles=["provider"], language="en", active=False
        )
    )
    await notify.publish(OrganizationChanged(org_id="org-closed", sector="ngo", active=False))
    await eventually(lambda: _deactivated(notify, "u-gone", "org-closed"))
    for event in (referral_created(to_org=SHELTER), referral_created(to_org="org-closed")):
        await notify.fanned_out(await notify.publish(event))
    assert await _inbox(notify, "u-gone") == []
    assert await _inbox(notify, "u-other", "org-closed") == []


async def _deactivated(notify: Notify, user_id: str, org_id: str) -> bool | None:
    async with notify.db.transaction() as session:
        user = await session.get(Recipient, user_id)
        org = await session.get(OrganizationState, org_id)
    return True if user and not user.active and org and not org.active else None


async def test_marking_read_and_the_unread_filter(notify: Notify) -> None:
    await notify.add_user("u-1")
    for _ in range(3):
        await notify.publish(referral_created())
    await eventually(lambda: _count(notify, "u-1", SHELTER, 3))
    newest, *_ = await _inbox(notify, "u-1")
    read = await notify.client.post(
        f"{NOTIFICATIONS}/{newest['id']}/read", headers=notify.token(subject="u-1")
    )
    assert read.status_code == 200
    assert read.json()["read_at"] is not None
    unread = await _inbox(notify, "u-1", unread="true")
    assert [n["id"] for n in unread] == [n["id"] for n in (await _inbox(notify, "u-1"))[1:]]


async def test_notifications_page_newest_first_with_a_cursor(notify: Notify) -> None:
    await notify.add_user("u-1")
    for _ in range(5):
        await notify.publish(referral_created())
    await eventually(lambda: _count(notify, "u-1", SHELTER, 5))
    everything = [n["id"] for n in await _inbox(notify, "u-1")]
    headers = notify.token(subject="u-1")
    first = (await notify.client.get(NOTIFICATIONS, params={"limit": 2}, headers=headers)).json()
    second = (
        await notify.client.get(
            NOTIFICATIONS, params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
        )
    ).json()
    assert [n["id"] for n in first["items"] + second["items"]] == everything[:4]
    assert everything == sorted(everything, reverse=True)


async def test_a_user_notify_learns_of_after_the_event_still_gets_it(notify: Notify) -> None:
    # The gateway's word about a user can arrive after an event meant for them: a new
    # account, or the two messages crossing on the bus (seen at `nrm up --demo`).
    envelope = await notify.publish(referral_created(to_org=SHELTER))
    await notify.fanned_out(envelope)

    await notify.add_user("u-late")
    await notify.add_user("u-elsewhere", org=POLICE)
    await notify.add_user("u-clerk", roles=("fund_officer",))

    late = (await eventually(lambda: _some(notify, "u-late")))[0]
    assert late["event_type"] == envelope.type
    assert await _inbox(notify, "u-elsewhere", POLICE) == [], "not their organisation"
    assert await _inbox(notify, "u-clerk") == [], "not their role"


async def test_events_older_than_the_window_are_not_filled_in(notify: Notify) -> None:
    envelope = await notify.publish(referral_created(to_org=SHELTER))
    notice = await notify.fanned_out(envelope)
    async with notify.db.transaction() as session:
        notice.created_at = utcnow() - NOTICE_WINDOW - timedelta(minutes=1)
        session.add(notice)

    await notify.add_user("u-late")
    await asyncio.sleep(0.3)

    assert await _inbox(notify, "u-late") == []
