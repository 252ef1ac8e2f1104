"""Shared outgoing clients keep no cookies between callers."""

from __future__ import annotations

import httpx

from nrm.http import without_cookies


def cookie_setting_service(seen: list[str | None]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=first-caller; Path=/"})

    return httpx.MockTransport(answer)


async def test_a_plain_client_would_replay_a_cookie_to_the_next_caller() -> None:
    seen: list[str | None] = []
    transport = cookie_setting_service(seen)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake.internal") as plain:
        await plain.get("/a")
        await plain.get("/b")

    assert seen == [None, "session=first-caller"], "the hazard this guards against"


async def test_a_client_without_cookies_sends_none_it_was_given() -> None:
    seen: list[str | None] = []
    transport = cookie_setting_service(seen)
    client = without_cookies(
        httpx.AsyncClient(transport=transport, base_url="http://intake.internal")
    )
    async with client:
        await client.get("/a")
        await client.get("/b")

    assert seen == [None, None]
