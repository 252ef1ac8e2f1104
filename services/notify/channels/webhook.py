"""Webhook adapter: the CloudEvent, signed (Standard Webhooks 1.0), to a checked address."""

from __future__ import annotations

import time

import httpx

from nrm.http import without_cookies
from services.notify.channels.outcome import Outcome
from services.notify.outbound import Allowlist, RefusedTarget, resolve_target
from services.notify.signing import signature_headers


def http_client(timeout: float, concurrency: int) -> httpx.AsyncClient:
    # No redirects (they could lead anywhere), no proxies from the environment. A bounded
    # pool: httpcore scans every pooled connection per request.
    client = httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=32),
    )
    return without_cookies(client)  # one client for every organisation's webhooks


async def send_webhook(
    http: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    message_id: str,
    body: bytes,
    allowlist: Allowlist,
    require_https: bool,
) -> Outcome:
    try:
        target = await resolve_target(url, allowlist, require_https=require_https)
    except RefusedTarget:
        return Outcome(delivered=False, error="refused_address")
    headers = {
        "content-type": "application/cloudevents+json",
        "host": target.host_header,
        "user-agent": "open-nrm-notify/1",
        **signature_headers(secret, message_id, int(time.time()), body),
    }
    try:
        response = await http.post(
            target.pinned_url,
            content=body,
            headers=headers,
            # Connect to the checked address but speak TLS to, and verify, the named host.
            extensions={"sni_hostname": target.host},
        )
    except httpx.TimeoutException:
        return Outcome(delivered=False, error="timeout")
    except httpx.HTTPError as exc:
        return Outcome(delivered=False, error=f"transport:{type(exc).__name__}"[:200])
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(delivered=True, status_code=status)
    if status == 410:
        return Outcome(delivered=False, status_code=status, error="gone", gone=True)
    return Outcome(delivered=False, status_code=status, error=f"http_{status}")
