"""Webhook secrets: made, sealed at rest, and used to sign (Standard Webhooks 1.0)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "whsec_"
SEALED_VERSION = "v1"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def seal(secret: str, key: bytes, subscription_id: str) -> str:
    """Encrypt with AES-GCM, bound to the subscription, so a database dump alone is useless."""
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, secret.encode(), subscription_id.encode())
    return f"{SEALED_VERSION}:{base64.b64encode(nonce + sealed).decode()}"


def unseal(stored: str, key: bytes, subscription_id: str) -> str:
    version, _, payload = stored.partition(":")
    if version != SEALED_VERSION:
        raise ValueError("unknown sealed secret version")
    raw = base64.b64decode(payload)
    return AESGCM(key).decrypt(raw[:12], raw[12:], subscription_id.encode()).decode()


def signature_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{digest}",
    }
