"""Who may call what: own user and organisation, the admin, others 404, no token 401."""

from __future__ import annotations

from typing import Any

import pytest

from tests.notify.conftest import SHELTER, Notify, referral_created
from tests.support import eventually

API = "/api/v1/notify"
OTHER = "org-elsewhere"


@pytest.fixture
async def world(notify: Notify) -> dict[str, Any]:
    """A subscription and a notification belonging to the shelter."""
    await notify.add_user("u-1")
    subscription = await notify.subscribe("http://127.0.0.1:9/hook")
    await notify.publish(referral_created())

    async def mine() -> list[Any] | None:
        answer = await notify.client.get(
            f"{API}/notifications", headers=notify.token(subject="u-1")
        )
        return answer.json()["items"] or None

    notification = (await eventually(mine))[0]

    async def delivery() -> list[Any] | None:
        return await notify.deliveries(subscription["id"]) or None

    return {
        "sub": subscription["id"],
        "note": notification["id"],
        "delivery": (await eventually(delivery))[0]["id"],
    }


ENDPOINTS = [
    ("GET", "/notifications", None),
    ("POST", "/notifications/{note}/read", None),
    ("GET", "/me/contact", None),
    ("PUT", "/me/contact", {"email": "a@example.org"}),
    ("GET", "/preferences", None),
    ("PUT", "/preferences", {"channels": {"*": ["in_app"]}}),
    ("GET", "/subscriptions", None),
    ("POST", "/subscriptions", {"url": "http://127.0.0.1:9/x", "event_types": ["*"]}),
    ("GET", "/subscriptions/{sub}", None),
    ("GET", "/subscriptions/{sub}/deliveries", None),
    ("POST", "/subscriptions/{sub}/deliveries/{delivery}/redeliver", None),
    ("POST", "/subscriptions/{sub}/enable", None),
    ("DELETE", "/subscriptions/{sub}", None),
    ("PUT", "/recipients/u-1/contact", {"email": "a@example.org"}),
    ("GET", "/diagnostics/pings/00000000-0000-0000-0000-000000000000", None),
]


async def _call(
    notify: Notify, world: dict[str, Any], method: str, path: str, body: Any, headers: Any
) -> int:
    answer = await notify.client.request(
        method, API + path.format(**world), json=body, headers=headers or {}
    )
    return answer.status_code


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_every_endpoint_needs_a_token(
    notify: Notify, world: dict[str, Any], method: str, path: str, body: Any
) -> None:
    assert await _call(notify, world, method, path, body, None) == 401


# What a partner system of the same organisation gets (roles system).
OWN = {
    "/notifications": 200,
    "/notifications/{note}/read": 404,  # the notification is u-1's, not this client's
    "/me/contact": 200,
    "/preferences": 200,
    "/subscriptions": 200,
    "/subscriptions/{sub}": 200,
    "/subscriptions/{sub}/deliveries": 200,
    "/subscriptions/{sub}/deliveries/{delivery}/redeliver": 202,
    "/subscriptions/{sub}/enable": 200,
    "/recipients/u-1/contact": 403,
    "/diagnostics/pings/00000000-0000-0000-0000-000000000000": 403,
}


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_a_system_client_of_the_owning_org(
    notify: Notify, world: dict[str, Any], method: str, path: str, body: Any
) -> None:
    expected = {"POST /subscriptions": 201, "DELETE /subscriptions/{sub}": 204}.get(
        f"{method} {path}", OWN[path]
    )
    status = await _call(notify, world, method, path, body, notify.token(subject="client-1"))
    assert status == expected


@pytest.mark.parametrize(
    "path",
    [
        "/subscriptions/{sub}",
        "/subscriptions/{sub}/deliveries",
    ],
)
async def test_another_orgs_system_client_sees_404(
    notify: Notify, world: dict[str, Any], path: str
) -> None:
    assert await _call(notify, world, "GET", path, None, notify.token(org=OTHER)) == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/subscriptions/{sub}/deliveries/{delivery}/redeliver"),
        ("POST", "/subscriptions/{sub}/enable"),
        ("DELETE", "/subscriptions/{sub}"),
    ],
)
async def test_another_org_cannot_touch_a_subscription(
    notify: Notify, world: dict[str, Any], method: str, path: str
) -> None:
    assert await _call(notify, world, method, path, None, notify.token(org=OTHER)) == 404
    assert await _call(notify, world, "GET", "/subscriptions/{sub}", None, notify.token()) == 200


async def test_another_orgs_lists_are_empty(notify: Notify, world: dict[str, Any]) -> None:
    other = notify.token(org=OTHER)
    subs = await notify.client.get(f"{API}/subscriptions", headers=other)
    notes = await notify.client.get(
        f"{API}/notifications", headers=notify.token(org=OTHER, subject="u-1")
    )
    assert subs.json()["items"] == []
    assert notes.json()["items"] == []


async def test_a_user_reads_only_their_own_notification(
    notify: Notify, world: dict[str, Any]
) -> None:
    own = notify.token(roles=("provider",), subject="u-1")
    other_user = notify.token(roles=("provider",), subject="u-2")
    same_id_other_org = notify.token(roles=("provider",), org=OTHER, subject="u-1")
    path = "/notifications/{note}/read"
    assert await _call(notify, world, "POST", path, None, other_user) == 404
    assert await _call(notify, world, "POST", path, None, same_id_other_org) == 404
    assert await _call(notify, world, "POST", path, None, own) == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/subscriptions", None),
        ("POST", "/subscriptions", {"url": "http://127.0.0.1:9/x", "event_types": ["*"]}),
        ("GET", "/subscriptions/{sub}", None),
        ("PUT", "/preferences", {"channels": {"*": ["in_app"]}}),
    ],
)
async def test_staff_without_a_managing_role_get_403(
    notify: Notify, world: dict[str, Any], method: str, path: str, body: Any
) -> None:
    provider = notify.token(roles=("provider",), subject="u-1")
    assert await _call(notify, world, method, path, body, provider) == 403


async def test_the_admin_sees_and_manages_any_orgs_subscriptions(
    notify: Notify, world: dict[str, Any]
) -> None:
    admin = notify.token(roles=("admin",), org="org-operator", subject="admin")
    assert await _call(notify, world, "GET", "/subscriptions/{sub}", None, admin) == 200
    listed = await notify.client.get(
        f"{API}/subscriptions", params={"org_id": SHELTER}, headers=admin
    )
    assert [s["id"] for s in listed.json()["items"]] == [world["sub"]]
    made = await notify.client.post(
        f"{API}/subscriptions",
        json={"url": "http://127.0.0.1:9/y", "event_types": ["*"], "org_id": OTHER},
        headers=admin,
    )
    assert made.status_code == 201
    assert made.json()["org_id"] == OTHER
    contact = await _call(
        notify, world, "PUT", "/recipients/u-1/contact", {"email": "u1@example.org"}, admin
    )
    assert contact == 200
    unknown = await _call(
        notify, world, "PUT", "/recipients/nobody/contact", {"email": "u1@example.org"}, admin
    )
    assert unknown == 404


async def test_only_the_admin_may_act_for_another_org(
    notify: Notify, world: dict[str, Any]
) -> None:
    answer = await notify.client.post(
        f"{API}/subscriptions",
        json={"url": "http://127.0.0.1:9/y", "event_types": ["*"], "org_id": OTHER},
        headers=notify.token(),
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["body", "org_id"]
    prefs = await notify.client.get(
        f"{API}/preferences", params={"org_id": OTHER}, headers=notify.token()
    )
    assert prefs.status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://127.0.0.1:9/x", "event_types": ["nrm.no.such.type.v1"]}, "event_types"),
        ({"url": "http://127.0.0.1:9/x", "event_types": []}, "event_types"),
        ({"url": "ftp://127.0.0.1/x", "event_types": ["*"]}, "url"),
        ({"event_types": ["*"]}, "url"),
        ({"url": "http://127.0.0.1:9/x", "event_types": ["*"], "extra": 1}, "extra"),
    ],
)
async def test_bad_subscriptions_are_422_naming_the_field_and_nothing_is_written(
    notify: Notify, body: dict[str, Any], field: str
) -> None:
    answer = await notify.client.post(f"{API}/subscriptions", json=body, headers=notify.token())
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert field in answer.json()["errors"][0]["loc"]
    listed = await notify.client.get(f"{API}/subscriptions", headers=notify.token())
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"phone": "900 00 00"}, "phone"),
        ({"country": "tj"}, "country"),
    ],
)
async def test_bad_contacts_are_422_without_echoing_them(
    notify: Notify, body: dict[str, Any], field: str
) -> None:
    answer = await notify.client.put(f"{API}/me/contact", json=body, headers=notify.token())
    assert answer.status_code == 422
    assert field in answer.json()["errors"][0]["loc"]
    assert next(iter(body.values())) not in answer.text


@pytest.mark.parametrize(
    "body",
    [
        {"channels": {"nrm.no.such.type.v1": ["in_app"]}},
        {"channels": {"*": ["pigeon"]}},
        {"channels": {}, "sms_quiet_hours": {"start": 22, "end": 7, "timezone": "Mars/Base"}},
        {"channels": {}, "sms_quiet_hours": {"start": 25, "end": 7}},
    ],
)
async def test_bad_preferences_are_422(notify: Notify, body: dict[str, Any]) -> None:
    answer = await notify.client.put(f"{API}/preferences", json=body, headers=notify.token())
    assert answer.status_code == 422
    stored = await notify.client.get(f"{API}/preferences", headers=notify.token())
    assert stored.json()["channels"] == {"*": ["in_app", "email"]}
