"""The gateway's RSA signing keys: one current key signs, retiring keys still verify.

In production the key is a PEM file named by NRM_SIGNING_KEY_FILE. In development
keys live under `<data_dir>/keys` as `signing-<kid>.pem`, with `retiring.json`
saying when each replaced key leaves the JWKS.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt

from nrm.auth import MIN_RSA_BITS
from nrm.clock import utcnow
from nrm.settings import InsecureConfiguration, Settings

ALGORITHM = "RS256"
# Development keys only; production brings its own key, of any size from 2048 up.
GENERATED_KEY_BITS = 2048
RETIRING_FILE = "retiring.json"

Clock = Callable[[], datetime]


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_KEY_BITS)


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): a kid derived from the key itself."""
    numbers = public_key.public_numbers()
    members = {"e": _b64_int(numbers.e), "kty": "RSA", "n": _b64_int(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())


@dataclass(frozen=True)
class _Key:
    private: rsa.RSAPrivateKey
    kid: str
    signer: Any
    retire_at: datetime | None = None

    @classmethod
    def of(cls, private: rsa.RSAPrivateKey, retire_at: datetime | None = None) -> _Key:
        if private.key_size < MIN_RSA_BITS:
            raise ValueError(f"signing keys need at least {MIN_RSA_BITS} bits")
        kid = thumbprint(private.public_key())
        return cls(private, kid, jwk.construct(private, ALGORITHM), retire_at)

    def public_jwk(self) -> dict[str, Any]:
        return dict(self._public_jwk)  # a copy: the cached one must stay as it is

    @functools.cached_property
    def _public_jwk(self) -> dict[str, Any]:
        # Asked for on every token verified; the key never changes.
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "n": _b64_int(numbers.n),
            "e": _b64_int(numbers.e),
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
        }


class SigningKeys:
    def __init__(
        self,
        current: rsa.RSAPrivateKey,
        *,
        directory: Path | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._current = _Key.of(current)
        self._older: list[_Key] = []
        self._directory = directory
        self._clock = clock

    @classmethod
    def load(cls, settings: Settings, *, clock: Clock = utcnow) -> SigningKeys:
        if settings.signing_key_file is not None:
            return cls(_read_private_key(settings.signing_key_file), clock=clock)
        if settings.env == "prod":
            raise InsecureConfiguration(
                "NRM_SIGNING_KEY_FILE must name the gateway's RSA key in production; "
                "generated development keys are refused."
            )
        return cls._load_directory(settings.data_dir / "keys", clock)

    @classmethod
    def _load_directory(cls, directory: Path, clock: Clock) -> SigningKeys:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)  # mkdir's mode is filtered by the umask and skipped if it exists
        retiring = _read_retiring(directory)
        now = clock()
        live: list[_Key] = []
        newest_first = sorted(
            directory.glob("signing-*.pem"), key=lambda path: path.stat().st_mtime_ns, reverse=True
        )
        for path in newest_first:
            private = _read_private_key(path)
            key = _Key.of(private, retiring.get(thumbprint(private.public_key())))
            if key.retire_at is not None and key.retire_at <= now:
                path.unlink()
            else:
                live.append(key)
        # The current key is the newest one not scheduled for retirement.
        current = next((key for key in live if key.retire_at is None), None)
        if current is None:
            current = _Key.of(generate_key())
            _write_owner_only(directory / f"signing-{current.kid}.pem", _pem(current.private))
        keys = cls(current.private, directory=directory, clock=clock)
        keys._older = [key for key in live if key is not current]
        keys._save_retiring()
        return keys

    @property
    def current_kid(self) -> str:
        return self._current.kid

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self._live()]}

    async def key(self, kid: str) -> dict[str, Any] | None:
        if kid == self._current.kid:  # nearly always, and asked on every request
            return self._current.public_jwk()
        return next((key.public_jwk() for key in self._live() if key.kid == kid), None)

    def sign(self, claims: Mapping[str, Any]) -> str:
        headers = {"kid": self._current.kid, "typ": "JWT"}
        token: str = jwt.encode(
            dict(claims), self._current.signer, algorithm=ALGORITHM, headers=headers
        )
        return token

    def rotate(self, retire_after: timedelta) -> str:
        """Sign with a new key from now on; older keys verify until `retire_after` has passed.

        Without a key directory (a key file or a test) the rotation lives in memory only.
        """
        retire_at = self._clock() + retire_after
        self._older = [
            dataclasses.replace(
                key, retire_at=retire_at if key.retire_at is None else min(key.retire_at, retire_at)
            )
            for key in [self._current, *self._live()[1:]]
        ]
        # Retirement is recorded before the new key exists: a crash in between leaves
        # no current key, and the next load simply generates one.
        self._save_retiring()
        new = _Key.of(generate_key())
        if self._directory is not None:
            _write_owner_only(self._directory / f"signing-{new.kid}.pem", _pem(new.private))
        self._current = new
        return new.kid

    def _live(self) -> list[_Key]:
        now = self._clock()
        return [self._current] + [
            key for key in self._older if key.retire_at is None or key.retire_at > now
        ]

    def _save_retiring(self) -> None:
        if self._directory is None:
            return
        retiring = {
            key.kid: key.retire_at.isoformat() for key in self._older if key.retire_at is not None
        }
        _write_owner_only(self._directory / RETIRING_FILE, json.dumps(retiring, indent=2).encode())


def issue_access_token(
    keys: SigningKeys,
    *,
    subject: str,
    org: str,
    roles: Iterable[str],
    scopes: Iterable[str] = (),
    issuer: str,
    audience: str,
    ttl: timedelta = timedelta(minutes=15),
    now: datetime | None = None,
) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds (the OAuth `expires_in`)."""
    issued_at = int((now or utcnow()).timestamp())
    expires_in = int(ttl.total_seconds())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "org": org,
        "roles": sorted(set(roles)),
        "scope": " ".join(sorted(set(scopes))),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + expires_in,
        "jti": str(uuid.uuid4()),
    }
    return keys.sign(claims), expires_in


def _read_private_key(path: Path) -> rsa.RSAPrivateKey:
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return private


def _read_retiring(directory: Path) -> dict[str, datetime]:
    path = directory / RETIRING_FILE
    if not path.exists():
        return {}
    return {kid: datetime.fromisoformat(at) for kid, at in json.loads(path.read_text()).items()}


def _pem(private: rsa.RSAPrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_owner_only(path: Path, content: bytes) -> None:
    # Written beside the target and renamed, so a reader never sees half a key.
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(content)
    os.replace(partial, path)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64_int(value: int) -> str:
    return _b64(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))
