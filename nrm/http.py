"""Outgoing HTTP clients shared by many callers."""

from __future__ import annotations

from http.cookiejar import DefaultCookiePolicy

import httpx


def without_cookies(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Make `client` keep no cookie a server sets. A client shared by every caller (the
    gateway's to a service, notify's to all webhooks) would otherwise send one caller's
    cookie with the next one's requests. A policy allowing no domain refuses them all."""
    client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return client
