"""Forged and malformed tokens against a live `nrm up` gateway and a live intake service.

Both answer 401 problem+json to every attack: the gateway (whether it verifies itself or
relies on the service behind it) and `nrm serve intake`, which fetches the gateway's JWKS
over HTTP and verifies on its own. A token minted by an independent library (PyJWT) with
the right key and claims is accepted by both: our tokens are plain RFC 7519 JWTs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jose import jwe

from gateway.keys import SigningKeys, issue_access_token, thumbprint
from nrm.settings import DEFAULT_AUDIENCE, DEFAULT_ISSUER, Settings
from tests.auth.conftest import DROP, JwksServer, b64, public_jwk
from tests.e2e.processes import free_port, nrm_process, run_nrm, wait_ready

PINGS = "/api/v1/intake/diagnostics/pings"
TARGETS = ("gateway", "intake")
# Dozens of refusals a second from one address: the limits would answer 429 instead.
NO_RATE_LIMITS = {"NRM_RATE_LIMIT_PER_IP": "0", "NRM_RATE_LIMIT_PER_CLIENT": "0"}


@dataclass(frozen=True)
class Platform:
    urls: dict[str, str]
    keys: SigningKeys
    private_key: rsa.RSAPrivateKey
    jwks: dict[str, Any]
    attacker: JwksServer
    attacker_key: rsa.RSAPrivateKey

    @property
    def kid(self) -> str:
        return self.keys.current_kid

    @property
    def published_key(self) -> dict[str, Any]:
        key: dict[str, Any] = next(k for k in self.jwks["keys"] if k["kid"] == self.kid)
        return key

    @property
    def attacker_url(self) -> str:
        return self.attacker.url.removesuffix("/jwks.json")


@pytest.fixture(scope="module")
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, attacker_key: rsa.RSAPrivateKey
) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("jwt-attacks")
    gateway = f"http://127.0.0.1:{free_port()}"
    intake = f"http://127.0.0.1:{free_port()}"
    intake_env = {"NRM_DATA_DIR": str(root / "intake"), "NRM_GATEWAY_URL": gateway}
    run_nrm("migrate", "intake", env=intake_env)
    with ExitStack() as stack:
        up = stack.enter_context(
            nrm_process(
                "up",
                "--port",
                gateway.rsplit(":", 1)[1],
                env={"NRM_DATA_DIR": str(root / "gateway"), **NO_RATE_LIMITS},
                log=root / "up.log",
            )
        )
        served = stack.enter_context(
            nrm_process(
                "serve",
                "intake",
                "--port",
                intake.rsplit(":", 1)[1],
                env=intake_env,
                log=root / "intake.log",
            )
        )
        wait_ready(f"{gateway}/readyz", process=up)
        wait_ready(f"{intake}/readyz", process=served)
        attacker = stack.enter_context(JwksServer())
        # Published where a token's jku/x5u points: a verifier that fetched it would be owned.
        attacker.publish(public_jwk(attacker_key))
        # The gateway generated its development key on start: sign with that one.
        keys = SigningKeys.load(Settings(data_dir=root / "gateway", _env_file=None))
        pem = (root / "gateway" / "keys" / f"signing-{keys.current_kid}.pem").read_bytes()
        private_key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(private_key, rsa.RSAPrivateKey)
        yield Platform(
            urls={"gateway": gateway, "intake": intake},
            keys=keys,
            private_key=private_key,
            jwks=httpx.get(f"{gateway}/.well-known/jwks.json", timeout=5).json(),
            attacker=attacker,
            attacker_key=attacker_key,
        )


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
        "sub": "user-attacker",
        "org": "org-operator",
        "roles": ["admin"],
        "scope": "",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not DROP}


def signed(
    key: rsa.RSAPrivateKey,
    payload: dict[str, Any],
    *,
    kid: str,
    alg: str = "RS256",
    **headers: Any,
) -> str:
    return pyjwt.encode(payload, key, algorithm=alg, headers={"kid": kid, **headers})


def segment(part: dict[str, Any]) -> str:
    return b64(json.dumps(part).encode())


def hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "urn:open-nrm:gateway")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def bearer(token: str) -> str:
    return f"Bearer {token}"


# Each attack builds the Authorization header (None: no header at all) for one request.
Attack = Callable[[Platform], str | None]


def alg_none_without_signature(p: Platform) -> str:
    return bearer(f"{segment({'alg': 'none', 'typ': 'JWT', 'kid': p.kid})}.{segment(claims())}.")


def alg_none_with_a_real_signature(p: Platform) -> str:
    payload = claims()
    real_signature = signed(p.private_key, payload, kid=p.kid).rsplit(".", 1)[1]
    header = segment({"alg": "none", "typ": "JWT", "kid": p.kid})
    return bearer(f"{header}.{segment(payload)}.{real_signature}")


def alg_none_capitalised(p: Platform) -> str:
    return bearer(f"{segment({'alg': 'None', 'typ': 'JWT', 'kid': p.kid})}.{segment(claims())}.")


def hs256_keyed_with_public_key_pem(p: Platform) -> str:
    secret = p.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bearer(hs256({"alg": "HS256", "typ": "JWT", "kid": p.kid}, claims(), secret))


def hs256_keyed_with_pkcs1_public_key_pem(p: Platform) -> str:
    secret = p.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    return bearer(hs256({"alg": "HS256", "typ": "JWT", "kid": p.kid}, claims(), secret))


def hs256_keyed_with_published_jwk_json(p: Platform) -> str:
    secret = json.dumps(p.published_key).encode()
    return bearer(hs256({"alg": "HS256", "typ": "JWT", "kid": p.kid}, claims(), secret))


def hs256_keyed_with_compact_jwk_json(p: Platform) -> str:
    secret = json.dumps(p.published_key, separators=(",", ":"), sort_keys=True).encode()
    return bearer(hs256({"alg": "HS256", "typ": "JWT", "kid": p.kid}, claims(), secret))


def payload_tampered_signature_kept(p: Platform) -> str:
    honest = signed(p.private_key, claims(roles=["auditor"]), kid=p.kid)
    header, _, signature = honest.split(".")
    return bearer(f"{header}.{segment(claims(roles=['admin']))}.{signature}")


def signature_stripped(p: Platform) -> str:
    header, payload, _ = signed(p.private_key, claims(), kid=p.kid).split(".")
    return bearer(f"{header}.{payload}.")


def expired(p: Platform) -> str:
    now = int(time.time())
    payload = claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    return bearer(signed(p.private_key, payload, kid=p.kid))


def not_yet_valid(p: Platform) -> str:
    payload = claims(nbf=int(time.time()) + 3600)
    return bearer(signed(p.private_key, payload, kid=p.kid))


def issued_in_the_future(p: Platform) -> str:
    now = int(time.time())
    payload = claims(iat=now + 3600, exp=now + 4200)
    return bearer(signed(p.private_key, payload, kid=p.kid))


def missing_exp(p: Platform) -> str:
    return bearer(signed(p.private_key, claims(exp=DROP), kid=p.kid))


def wrong_audience(p: Platform) -> str:
    return bearer(signed(p.private_key, claims(aud="urn:another:api"), kid=p.kid))


def wrong_issuer(p: Platform) -> str:
    return bearer(signed(p.private_key, claims(iss="https://idp.attacker.test"), kid=p.kid))


def unknown_kid(p: Platform) -> str:
    return bearer(signed(p.private_key, claims(), kid="no-such-key"))


def kid_path_traversal(p: Platform) -> str:
    return bearer(signed(p.private_key, claims(), kid="../../etc/passwd"))


def kid_sql_injection(p: Platform) -> str:
    return bearer(signed(p.private_key, claims(), kid="' OR 1=1 --"))


def missing_kid(p: Platform) -> str:
    return bearer(pyjwt.encode(claims(), p.private_key, algorithm="RS256"))


def jku_to_attacker_jwks(p: Platform) -> str:
    attacker_kid = thumbprint(p.attacker_key.public_key())
    jku = f"{p.attacker_url}/jwks.json"
    return bearer(signed(p.attacker_key, claims(), kid=attacker_kid, jku=jku))


def jku_to_attacker_jwks_with_known_kid(p: Platform) -> str:
    jku = f"{p.attacker_url}/jwks.json"
    return bearer(signed(p.attacker_key, claims(), kid=p.kid, jku=jku))


def x5u_to_attacker_certificate(p: Platform) -> str:
    attacker_kid = thumbprint(p.attacker_key.public_key())
    x5u = f"{p.attacker_url}/cert.pem"
    return bearer(signed(p.attacker_key, claims(), kid=attacker_kid, x5u=x5u))


def embedded_attacker_jwk(p: Platform) -> str:
    key = public_jwk(p.attacker_key)
    return bearer(signed(p.attacker_key, claims(), kid=key["kid"], jwk=key))


def embedded_attacker_x5c(p: Platform) -> str:
    der = self_signed(p.attacker_key).public_bytes(serialization.Encoding.DER)
    chain = [base64.b64encode(der).decode()]
    return bearer(signed(p.attacker_key, claims(), kid=p.kid, x5c=chain))


def another_key_with_known_kid(p: Platform) -> str:
    return bearer(signed(p.attacker_key, claims(), kid=p.kid))


def our_key_with_another_rsa_algorithm(p: Platform) -> str:
    # The published key is bound to RS256 (RFC 8725 §3.1).
    return bearer(signed(p.private_key, claims(), kid=p.kid, alg="RS512"))


def oversized(p: Platform) -> str:
    token = signed(p.private_key, claims(padding="x" * 20_000), kid=p.kid)
    assert len(token) > 16 * 1024
    return bearer(token)


def jwe_compact(p: Platform) -> str:
    token: bytes = jwe.encrypt(
        json.dumps(claims()).encode(),
        p.published_key,
        algorithm="RSA-OAEP",
        encryption="A256GCM",
        kid=p.kid,
    )
    assert token.count(b".") == 4, "a JWE compact serialisation has five parts"
    return bearer(token.decode())


def no_authorization_header(_: Platform) -> None:
    return None


def empty_bearer(_: Platform) -> str:
    return "Bearer"


def basic_scheme(_: Platform) -> str:
    return "Basic " + base64.b64encode(b"admin:demo-password").decode()


def valid_token_under_another_scheme(p: Platform) -> str:
    return f"Token {signed(p.private_key, claims(), kid=p.kid)}"


ATTACKS: dict[str, Attack] = {
    attack.__name__: attack
    for attack in (
        alg_none_without_signature,
        alg_none_with_a_real_signature,
        alg_none_capitalised,
        hs256_keyed_with_public_key_pem,
        hs256_keyed_with_pkcs1_public_key_pem,
        hs256_keyed_with_published_jwk_json,
        hs256_keyed_with_compact_jwk_json,
        payload_tampered_signature_kept,
        signature_stripped,
        expired,
        not_yet_valid,
        issued_in_the_future,
        missing_exp,
        wrong_audience,
        wrong_issuer,
        unknown_kid,
        kid_path_traversal,
        kid_sql_injection,
        missing_kid,
        jku_to_attacker_jwks,
        jku_to_attacker_jwks_with_known_kid,
        x5u_to_attacker_certificate,
        embedded_attacker_jwk,
        embedded_attacker_x5c,
        another_key_with_known_kid,
        our_key_with_another_rsa_algorithm,
        oversized,
        jwe_compact,
        no_authorization_header,
        empty_bearer,
        basic_scheme,
        valid_token_under_another_scheme,
    )
}


def post_ping(platform: Platform, target: str, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.post(f"{platform.urls[target]}{PINGS}", headers=headers, timeout=10)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("attack", ATTACKS)
def test_forged_or_malformed_token_is_refused_with_401_problem(
    platform: Platform, target: str, attack: str
) -> None:
    authorization = ATTACKS[attack](platform)

    answer = post_ping(platform, target, authorization)

    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"].split(";")[0] == "application/problem+json"
    assert answer.json()["status"] == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    if authorization is not None and "." in authorization:
        payload = authorization.split(".")[1]
        assert payload not in answer.text, "the token is never echoed back"
    assert platform.attacker.hits == 0, "a key URL named by the token was fetched"


def test_key_urls_named_by_tokens_are_never_fetched(platform: Platform) -> None:
    for target in TARGETS:
        for attack in (jku_to_attacker_jwks, x5u_to_attacker_certificate):
            assert post_ping(platform, target, attack(platform)).status_code == 401

    assert platform.attacker.hits == 0


@pytest.mark.parametrize("target", TARGETS)
def test_token_minted_by_pyjwt_with_our_key_and_claims_is_accepted(
    platform: Platform, target: str
) -> None:
    token = pyjwt.encode(
        claims(), platform.private_key, algorithm="RS256", headers={"kid": platform.kid}
    )

    answer = post_ping(platform, target, bearer(token))

    assert answer.status_code == 202, answer.text
    assert uuid.UUID(answer.json()["ping_id"])


@pytest.mark.parametrize("target", TARGETS)
def test_token_issued_by_the_gateway_is_accepted(platform: Platform, target: str) -> None:
    token, _ = issue_access_token(
        platform.keys,
        subject="user-admin",
        org="org-operator",
        roles=["admin"],
        issuer=DEFAULT_ISSUER,
        audience=DEFAULT_AUDIENCE,
    )

    assert post_ping(platform, target, bearer(token)).status_code == 202


def test_gateway_tokens_verify_with_pyjwt_against_the_published_jwks(platform: Platform) -> None:
    token, _ = issue_access_token(
        platform.keys,
        subject="user-admin",
        org="org-operator",
        roles=["admin"],
        issuer=DEFAULT_ISSUER,
        audience=DEFAULT_AUDIENCE,
    )
    header = pyjwt.get_unverified_header(token)
    key = pyjwt.PyJWKSet.from_dict(platform.jwks)[header["kid"]]

    decoded = pyjwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=DEFAULT_AUDIENCE,
        issuer=DEFAULT_ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )

    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    assert decoded["roles"] == ["admin"]
    assert decoded["org"] == "org-operator"
