from __future__ import annotations

import base64
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt

from gateway.keys import SigningKeys, issue_access_token, thumbprint
from nrm.auth import TokenVerifier
from nrm.errors import Unauthorized
from nrm.settings import InsecureConfiguration, Settings
from tests.auth.conftest import AUDIENCE, ISSUER


class WallClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def dev_settings(data_dir: Path) -> Settings:
    return Settings(env="dev", data_dir=data_dir, signing_key_file=None)


def token(keys: SigningKeys) -> str:
    issued, _ = issue_access_token(
        keys, subject="user-1", org="org-1", roles=["admin"], issuer=ISSUER, audience=AUDIENCE
    )
    return issued


def write_pem(path: Path, private: rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_thumbprint_matches_the_rfc_7638_example() -> None:
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
        "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQ"
        "Fh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    modulus = int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big")
    public = rsa.RSAPublicNumbers(65537, modulus).public_key()

    assert thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_dev_key_is_generated_once_and_reused_across_loads(tmp_path: Path) -> None:
    first = SigningKeys.load(dev_settings(tmp_path))
    second = SigningKeys.load(dev_settings(tmp_path))

    assert second.current_kid == first.current_kid
    assert [path.name for path in (tmp_path / "keys").glob("*.pem")] == [
        f"signing-{first.current_kid}.pem"
    ]


def test_dev_key_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    keys = SigningKeys.load(dev_settings(tmp_path))
    keys.rotate(timedelta(hours=1))

    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    for path in (tmp_path / "keys").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_production_without_a_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InsecureConfiguration, match="NRM_SIGNING_KEY_FILE"):
        SigningKeys.load(Settings(env="prod", data_dir=tmp_path, signing_key_file=None))

    assert not (tmp_path / "keys").exists()


def test_key_file_is_used_with_its_thumbprint_as_kid(
    tmp_path: Path, provider_key: rsa.RSAPrivateKey
) -> None:
    key_file = write_pem(tmp_path / "gateway.pem", provider_key)
    settings = Settings(env="prod", data_dir=tmp_path, signing_key_file=key_file)

    keys = SigningKeys.load(settings)

    assert keys.current_kid == thumbprint(provider_key.public_key())
    assert jwt.get_unverified_header(token(keys))["kid"] == keys.current_kid
    assert not (tmp_path / "keys").exists()


def test_short_or_non_rsa_keys_are_refused(tmp_path: Path, short_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="2048"):
        SigningKeys(short_key)

    curve_file = tmp_path / "ec.pem"
    curve_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="not an RSA"):
        SigningKeys.load(Settings(env="prod", data_dir=tmp_path, signing_key_file=curve_file))


async def test_jwks_publishes_public_members_only(provider_key: rsa.RSAPrivateKey) -> None:
    keys = SigningKeys(provider_key)

    (published,) = keys.jwks()["keys"]

    assert set(published) == {"kty", "n", "e", "kid", "use", "alg"}
    assert published["use"] == "sig"
    assert published["alg"] == "RS256"
    assert await keys.key(keys.current_kid) == published
    assert await keys.key("another-kid") is None


def test_issued_token_carries_the_contract_claims(provider_key: rsa.RSAPrivateKey) -> None:
    keys = SigningKeys(provider_key)
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    issued, expires_in = issue_access_token(
        keys,
        subject="user-1",
        org="org-1",
        roles=["provider", "case_worker"],
        scopes=["cases:read"],
        issuer=ISSUER,
        audience=AUDIENCE,
        ttl=timedelta(minutes=15),
        now=now,
    )

    header = jwt.get_unverified_header(issued)
    body = jwt.get_unverified_claims(issued)
    assert expires_in == 900
    assert header == {"alg": "RS256", "kid": keys.current_kid, "typ": "JWT"}
    assert body == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "org": "org-1",
        "roles": ["case_worker", "provider"],
        "scope": "cases:read",
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(now.timestamp()) + 900,
        "jti": body["jti"],
    }
    assert uuid.UUID(body["jti"]).version == 4


async def test_issued_token_passes_the_verifier(provider_key: rsa.RSAPrivateKey) -> None:
    keys = SigningKeys(provider_key)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)

    principal = await verifier.verify(token(keys))

    assert (principal.subject, principal.org, principal.roles) == (
        "user-1",
        "org-1",
        frozenset({"admin"}),
    )


async def test_rotation_keeps_the_old_key_verifiable_until_retirement_then_drops_it(
    provider_key: rsa.RSAPrivateKey,
) -> None:
    clock = WallClock()
    keys = SigningKeys(provider_key, clock=clock)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)
    old_kid, old_token = keys.current_kid, token(keys)

    new_kid = keys.rotate(retire_after=timedelta(minutes=20))
    new_token = token(keys)

    assert new_kid != old_kid
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert [key["kid"] for key in keys.jwks()["keys"]] == [new_kid, old_kid]
    await verifier.verify(old_token)
    await verifier.verify(new_token)

    clock.now += timedelta(minutes=21)

    assert [key["kid"] for key in keys.jwks()["keys"]] == [new_kid]
    with pytest.raises(Unauthorized):
        await verifier.verify(old_token)
    await verifier.verify(new_token)


def test_rotation_is_persisted_and_retired_key_files_are_deleted(tmp_path: Path) -> None:
    clock = WallClock()
    old_kid = SigningKeys.load(dev_settings(tmp_path), clock=clock).current_kid
    new_kid = SigningKeys.load(dev_settings(tmp_path), clock=clock).rotate(timedelta(minutes=20))

    reloaded = SigningKeys.load(dev_settings(tmp_path), clock=clock)
    assert reloaded.current_kid == new_kid
    assert [key["kid"] for key in reloaded.jwks()["keys"]] == [new_kid, old_kid]

    clock.now += timedelta(minutes=21)
    after_retirement = SigningKeys.load(dev_settings(tmp_path), clock=clock)

    assert after_retirement.current_kid == new_kid
    assert [key["kid"] for key in after_retirement.jwks()["keys"]] == [new_kid]
    assert not (tmp_path / "keys" / f"signing-{old_kid}.pem").exists()


def test_second_rotation_does_not_extend_an_earlier_retirement(
    provider_key: rsa.RSAPrivateKey,
) -> None:
    clock = WallClock()
    keys = SigningKeys(provider_key, clock=clock)
    first_kid = keys.current_kid
    second_kid = keys.rotate(timedelta(minutes=10))
    third_kid = keys.rotate(timedelta(hours=1))

    clock.now += timedelta(minutes=11)

    assert [key["kid"] for key in keys.jwks()["keys"]] == [third_kid, second_kid]
    assert first_kid not in {key["kid"] for key in keys.jwks()["keys"]}
