from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt as jose_jwt

from gateway.keys import thumbprint
from nrm.auth import JwksClient, Principal, TokenVerifier
from nrm.errors import Unauthorized
from tests.auth.conftest import (
    AUDIENCE,
    DROP,
    ISSUER,
    JwksServer,
    MonotonicClock,
    b64,
    claims,
    public_jwk,
    sign,
    unsigned_segments,
)


@pytest.fixture
def jwks(
    jwks_server: JwksServer,
    http: httpx.AsyncClient,
    clock: MonotonicClock,
    provider_key: rsa.RSAPrivateKey,
) -> JwksClient:
    jwks_server.publish(public_jwk(provider_key))
    return JwksClient(jwks_server.url, http, min_refresh_interval=30, ttl=600, clock=clock)


@pytest.fixture
def verifier(jwks: JwksClient) -> TokenVerifier:
    return TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE)


async def rejected(verifier: TokenVerifier, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as refused:
        await verifier.verify(token)
    return refused.value


async def test_valid_token_is_accepted_and_mapped_to_principal(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey
) -> None:
    payload = claims()

    principal = await verifier.verify(sign(provider_key, payload))

    assert principal == Principal(
        subject="user-7",
        org="org-shelter",
        roles=frozenset({"case_worker", "provider"}),
        scopes=frozenset({"cases:read", "referrals:write"}),
        token_id=payload["jti"],
    )
    assert principal.has_role("admin", "provider")
    assert not principal.has_role("admin")


async def test_access_token_type_at_jwt_is_accepted(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey
) -> None:
    principal = await verifier.verify(sign(provider_key, typ="at+jwt"))

    assert principal.subject == "user-7"


async def test_token_without_roles_or_scope_has_none(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey
) -> None:
    principal = await verifier.verify(sign(provider_key, claims(roles=DROP, scope=DROP)))

    assert principal.roles == frozenset()
    assert principal.scopes == frozenset()


async def test_expired_token_is_rejected_as_expired(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey
) -> None:
    past = int(time.time()) - 3600

    refusal = await rejected(verifier, sign(provider_key, claims(iat=past, exp=past + 60)))

    assert refusal.detail == "Token expired."
    assert refusal.headers == {"WWW-Authenticate": "Bearer"}


async def test_token_expired_within_leeway_is_still_accepted(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey
) -> None:
    now = int(time.time())

    principal = await verifier.verify(sign(provider_key, claims(iat=now - 60, exp=now - 10)))

    assert principal.subject == "user-7"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"iss": "https://evil.test"}, id="wrong issuer"),
        pytest.param({"aud": "urn:other:api"}, id="wrong audience"),
        pytest.param({"aud": ["urn:other:api", "urn:third:api"]}, id="audience list without ours"),
        pytest.param({"exp": DROP}, id="missing exp"),
        pytest.param({"iat": DROP}, id="missing iat"),
        pytest.param({"iss": DROP}, id="missing iss"),
        pytest.param({"aud": DROP}, id="missing aud"),
        pytest.param({"sub": DROP}, id="missing sub"),
        pytest.param({"sub": ""}, id="empty sub"),
        pytest.param({"sub": 42}, id="sub not a string"),
        pytest.param({"nbf": int(time.time()) + 3600}, id="nbf in the future"),
        pytest.param({"iat": int(time.time()) + 3600}, id="iat in the future"),
        pytest.param({"exp": "tomorrow"}, id="exp not a number"),
        pytest.param({"exp": [1]}, id="exp a list"),
        pytest.param({"exp": str(int(time.time()) + 300)}, id="exp a numeric string"),
        pytest.param({"org": DROP}, id="missing org"),
        pytest.param({"org": ["a", "b"]}, id="org not a string"),
        pytest.param({"roles": "admin"}, id="roles a string"),
        pytest.param({"roles": ["admin", 1]}, id="roles with a non-string"),
        pytest.param({"scope": ["cases:read"]}, id="scope not a string"),
        pytest.param({"jti": 7}, id="jti not a string"),
    ],
)
async def test_token_with_bad_claims_is_rejected(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey, changes: dict[str, Any]
) -> None:
    refusal = await rejected(verifier, sign(provider_key, claims(**changes)))

    assert refusal.detail == "Invalid token."


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b.c", "a.b", "...", "x" * 20_000],
)
async def test_malformed_token_is_rejected(verifier: TokenVerifier, token: str) -> None:
    await rejected(verifier, token)


async def test_alg_none_is_rejected(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey
) -> None:
    kid = thumbprint(provider_key.public_key())
    for alg in ("none", "None", "NONE"):
        token = unsigned_segments({"alg": alg, "kid": kid, "typ": "JWT"}, claims()) + "."
        await rejected(verifier, token)


async def test_hs256_signed_with_the_public_key_is_rejected(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey
) -> None:
    # The classic confusion: an attacker knows the public key and uses it as an HMAC secret.
    kid = thumbprint(provider_key.public_key())
    public_pem = provider_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = unsigned_segments({"alg": "HS256", "kid": kid, "typ": "JWT"}, claims())
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()

    await rejected(verifier, f"{signing_input}.{b64(mac)}")


@pytest.mark.parametrize("alg", ["RS384", "RS512"])
async def test_algorithm_outside_the_allowlist_is_rejected_even_with_a_good_signature(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey, alg: str
) -> None:
    await rejected(verifier, sign(provider_key, alg=alg))


async def test_allowlist_holds_even_when_the_key_names_no_algorithm(
    jwks_server: JwksServer, http: httpx.AsyncClient, provider_key: rsa.RSAPrivateKey
) -> None:
    unbound = {name: value for name, value in public_jwk(provider_key).items() if name != "alg"}
    jwks_server.publish(unbound)
    verifier = TokenVerifier(JwksClient(jwks_server.url, http), issuer=ISSUER, audience=AUDIENCE)

    await verifier.verify(sign(provider_key))
    await rejected(verifier, sign(provider_key, alg="RS512"))


async def test_header_alg_differing_from_the_keys_alg_is_rejected(
    jwks_server: JwksServer, http: httpx.AsyncClient, provider_key: rsa.RSAPrivateKey
) -> None:
    jwks_server.publish(public_jwk(provider_key, alg="RS512"))
    verifier = TokenVerifier(
        JwksClient(jwks_server.url, http), issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"]
    )

    await rejected(verifier, sign(provider_key))


async def test_token_signed_by_another_key_with_the_same_kid_is_rejected(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey, attacker_key: rsa.RSAPrivateKey
) -> None:
    forged = sign(attacker_key, kid=thumbprint(provider_key.public_key()))

    await rejected(verifier, forged)


async def test_token_bringing_its_own_key_is_rejected_without_fetching_it(
    verifier: TokenVerifier, attacker_key: rsa.RSAPrivateKey
) -> None:
    with JwksServer() as attacker_jwks:
        attacker_jwks.publish(public_jwk(attacker_key))
        by_url = sign(attacker_key, jku=attacker_jwks.url)
        embedded = sign(attacker_key, jwk=public_jwk(attacker_key))

        await rejected(verifier, by_url)
        await rejected(verifier, embedded)

        assert attacker_jwks.hits == 0


@pytest.mark.parametrize(
    "header",
    [
        {"jwk": {"kty": "RSA"}},
        {"jku": "https://idp.test/jwks.json"},
        {"x5u": "https://idp.test/cert.pem"},
        {"x5c": ["MIIB"]},
        {"crit": ["exp"]},
    ],
    ids=lambda header: next(iter(header)),
)
async def test_key_bearing_or_critical_headers_are_refused_even_on_a_good_signature(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey, header: dict[str, Any]
) -> None:
    await rejected(verifier, sign(provider_key, **header))


@pytest.mark.parametrize(
    "header",
    [{"kid": DROP}, {"kid": ""}, {"kid": ["a"]}, {"typ": "JWE"}, {"typ": "id_token+jwt"}],
    ids=["no kid", "empty kid", "kid a list", "typ JWE", "typ id token"],
)
async def test_token_with_unacceptable_header_is_rejected(
    verifier: TokenVerifier, provider_key: rsa.RSAPrivateKey, header: dict[str, Any]
) -> None:
    await rejected(verifier, sign(provider_key, **header))


async def test_key_shorter_than_2048_bits_is_refused(
    jwks_server: JwksServer, http: httpx.AsyncClient, short_key: rsa.RSAPrivateKey
) -> None:
    jwks_server.publish(public_jwk(short_key))
    verifier = TokenVerifier(JwksClient(jwks_server.url, http), issuer=ISSUER, audience=AUDIENCE)

    await rejected(verifier, sign(short_key))


def test_verifier_accepts_only_rsa_signature_algorithms(jwks: JwksClient) -> None:
    for algorithms in (["HS256"], ["RS256", "none"], ["ES256"], []):
        with pytest.raises(ValueError, match="RSA"):
            TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms)


async def test_keycloak_nested_roles_and_custom_org_claim_are_mapped(
    jwks: JwksClient, provider_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(
        jwks,
        issuer=ISSUER,
        audience=AUDIENCE,
        roles_claim="realm_access.roles",
        org_claim="organization_id",
    )
    keycloak_claims = claims(
        roles=DROP,
        org=DROP,
        organization_id="org-police",
        realm_access={"roles": ["intake_officer", "offline_access"]},
    )

    principal = await verifier.verify(sign(provider_key, keycloak_claims))

    assert principal.org == "org-police"
    assert principal.roles == frozenset({"intake_officer", "offline_access"})
    await rejected(verifier, sign(provider_key, claims(organization_id="o", realm_access=["x"])))


async def test_unknown_kid_is_rejected_after_one_refresh(
    verifier: TokenVerifier,
    jwks_server: JwksServer,
    clock: MonotonicClock,
    provider_key: rsa.RSAPrivateKey,
    attacker_key: rsa.RSAPrivateKey,
) -> None:
    await verifier.verify(sign(provider_key))
    clock.now += 60

    await rejected(verifier, sign(attacker_key))

    assert jwks_server.hits == 2


async def test_rotation_at_the_provider_is_picked_up_on_unknown_kid(
    verifier: TokenVerifier,
    jwks_server: JwksServer,
    clock: MonotonicClock,
    provider_key: rsa.RSAPrivateKey,
    next_provider_key: rsa.RSAPrivateKey,
) -> None:
    await verifier.verify(sign(provider_key))
    jwks_server.publish(public_jwk(provider_key), public_jwk(next_provider_key))
    clock.now += 31

    principal = await verifier.verify(sign(next_provider_key))

    assert principal.subject == "user-7"
    assert jwks_server.hits == 2


async def test_unknown_kids_refresh_at_most_once_per_interval(
    jwks: JwksClient, jwks_server: JwksServer, clock: MonotonicClock
) -> None:
    kids = [f"made-up-{n}" for n in range(50)]

    first_flood = await asyncio.gather(*(jwks.key(kid) for kid in kids))
    clock.now += 10
    second_flood = await asyncio.gather(*(jwks.key(kid) for kid in kids))
    assert jwks_server.hits == 1

    clock.now += 30
    await jwks.key("made-up-again")

    assert first_flood == second_flood == [None] * 50
    assert jwks_server.hits == 2


async def test_concurrent_requests_on_a_cold_cache_wait_for_the_one_fetch(
    verifier: TokenVerifier, jwks_server: JwksServer, provider_key: rsa.RSAPrivateKey
) -> None:
    token = sign(provider_key)

    principals = await asyncio.gather(*(verifier.verify(token) for _ in range(20)))

    assert {principal.subject for principal in principals} == {"user-7"}
    assert jwks_server.hits == 1


async def test_known_keys_are_served_from_cache_until_the_ttl(
    jwks: JwksClient,
    jwks_server: JwksServer,
    clock: MonotonicClock,
    provider_key: rsa.RSAPrivateKey,
) -> None:
    kid = thumbprint(provider_key.public_key())

    for _ in range(5):
        assert await jwks.key(kid) is not None
        clock.now += 100
    assert jwks_server.hits == 1

    clock.now += 200
    await jwks.key(kid)
    assert jwks_server.hits == 2


async def test_cached_keys_keep_serving_when_the_provider_fails(
    verifier: TokenVerifier,
    jwks_server: JwksServer,
    clock: MonotonicClock,
    provider_key: rsa.RSAPrivateKey,
) -> None:
    await verifier.verify(sign(provider_key))
    jwks_server.failing = True
    clock.now += 3600

    principal = await verifier.verify(sign(provider_key))

    assert principal.subject == "user-7"
    assert jwks_server.hits == 2


async def test_unreachable_provider_means_unknown_keys_not_a_crash(
    http: httpx.AsyncClient, clock: MonotonicClock, provider_key: rsa.RSAPrivateKey
) -> None:
    with JwksServer() as gone:
        url = gone.url
    verifier = TokenVerifier(JwksClient(url, http, clock=clock), issuer=ISSUER, audience=AUDIENCE)

    await rejected(verifier, sign(provider_key))


async def test_keys_not_published_for_signing_are_ignored(
    jwks_server: JwksServer, http: httpx.AsyncClient, provider_key: rsa.RSAPrivateKey
) -> None:
    jwks_server.publish(public_jwk(provider_key, use="enc"))
    verifier = TokenVerifier(JwksClient(jwks_server.url, http), issuer=ISSUER, audience=AUDIENCE)

    await rejected(verifier, sign(provider_key))


class Keys:
    """A key source the test changes under the verifier's feet."""

    def __init__(self, *jwks: dict[str, Any]) -> None:
        self.by_kid = {jwk["kid"]: jwk for jwk in jwks}

    async def key(self, kid: str) -> dict[str, Any] | None:
        return self.by_kid.get(kid)


def counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    decoded: list[str] = []
    real = jose_jwt.decode

    def decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jose_jwt, "decode", decode)  # the module nrm.auth calls through
    return decoded


async def test_a_token_is_verified_once_then_recognised(
    provider_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(public_jwk(provider_key))
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)
    decoded = counting_decodes(monkeypatch)
    token = sign(provider_key)

    first = await verifier.verify(token)
    again = [await verifier.verify(token) for _ in range(5)]

    assert again == [first] * 5
    assert decoded == [token], "the signature is checked once per token, not per request"


async def test_a_recognised_token_still_expires(provider_key: rsa.RSAPrivateKey) -> None:
    keys = Keys(public_jwk(provider_key))
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, leeway=0)
    expires = int(time.time()) + 1
    token = sign(provider_key, claims(exp=expires, nbf=DROP))
    await verifier.verify(token)

    await asyncio.sleep(expires + 1.1 - time.time())

    await rejected(verifier, token)


async def test_a_recognised_token_ends_with_the_key_that_verified_it(
    provider_key: rsa.RSAPrivateKey, attacker_key: rsa.RSAPrivateKey
) -> None:
    original = public_jwk(provider_key)
    keys = Keys(original)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)
    token = sign(provider_key)
    await verifier.verify(token)

    # The same kid now names another key (a provider re-keyed), then none at all.
    keys.by_kid[original["kid"]] = {**public_jwk(attacker_key), "kid": original["kid"]}
    await rejected(verifier, token)
    keys.by_kid.clear()
    await rejected(verifier, token)


async def test_remembering_is_bounded(
    provider_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TokenVerifier, "REMEMBERED", 3)
    verifier = TokenVerifier(Keys(public_jwk(provider_key)), issuer=ISSUER, audience=AUDIENCE)
    decoded = counting_decodes(monkeypatch)
    tokens = [sign(provider_key) for _ in range(4)]

    for token in tokens:
        await verifier.verify(token)
    await verifier.verify(tokens[0])  # the oldest was forgotten to make room
    await verifier.verify(tokens[3])  # the newest was not

    assert decoded == [*tokens, tokens[0]]


async def test_a_verifier_told_to_remember_nothing_checks_every_time(
    provider_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TokenVerifier, "REMEMBERED", 0)
    verifier = TokenVerifier(Keys(public_jwk(provider_key)), issuer=ISSUER, audience=AUDIENCE)
    decoded = counting_decodes(monkeypatch)
    token = sign(provider_key)

    for _ in range(3):
        await verifier.verify(token)

    assert decoded == [token] * 3
