"""Real keys, real signatures and a real HTTP server standing in for an identity provider."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from gateway.keys import thumbprint
from tests.support import LocalHttpServer, QuietHandler

ISSUER = "https://idp.test/realms/nrm"
AUDIENCE = "urn:open-nrm:api"
DROP = object()  # a claim or header value meaning "leave this one out"


def public_jwk(private: rsa.RSAPrivateKey, **extra: Any) -> dict[str, Any]:
    numbers = private.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": thumbprint(private.public_key()),
        "use": "sig",
        "alg": "RS256",
        "n": b64_int(numbers.n),
        "e": b64_int(numbers.e),
        **extra,
    }


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64_int(value: int) -> str:
    return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-7",
        "org": "org-shelter",
        "roles": ["case_worker", "provider"],
        "scope": "cases:read referrals:write",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not DROP}


def sign(
    private: rsa.RSAPrivateKey,
    payload: dict[str, Any] | None = None,
    *,
    alg: str = "RS256",
    **headers: Any,
) -> str:
    header = {"kid": thumbprint(private.public_key()), **headers}
    header = {name: value for name, value in header.items() if value is not DROP}
    token: str = jwt.encode(payload or claims(), private, algorithm=alg, headers=header)
    return token


def unsigned_segments(header: dict[str, Any], payload: dict[str, Any]) -> str:
    encode = json.dumps
    return f"{b64(encode(header).encode())}.{b64(encode(payload).encode())}"


class JwksServer(LocalHttpServer):
    """Serves `document` at /jwks.json on 127.0.0.1 and counts the requests it gets."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.hits = 0
        self.failing = False
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def url(self) -> str:
        return f"{self.base_url}/jwks.json"

    def publish(self, *keys: dict[str, Any]) -> None:
        self.document = {"keys": list(keys)}

    def _handler(self) -> type[QuietHandler]:
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits += 1
                if server.failing:
                    self.answer(500, "application/json", b"oops")
                else:
                    self.answer(200, "application/json", json.dumps(server.document).encode())

        return Handler


class MonotonicClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def provider_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def next_provider_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def short_key() -> rsa.RSAPrivateKey:
    # Deliberately weak: tests check that it is refused.
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def clock() -> MonotonicClock:
    return MonotonicClock()
