"""Bearer-token verification shared by the gateway and every service (RFC 8725, JWT BCP).

Failures answer 401 with a short detail that says nothing about which check failed
beyond "expired": an attacker learns little, an honest client knows to refresh.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, Request
from jose import jwk, jwt
from jose.exceptions import ExpiredSignatureError, JWKError, JWTError

from nrm.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
MIN_RSA_BITS = 2048
# Headers that would let the token choose its own verification key (RFC 8725 §3.10).
EMBEDDED_KEY_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c"})
TYPES = frozenset({"jwt", "at+jwt"})
# Far above any real access token; refuses absurd inputs before any parsing.
MAX_TOKEN_LENGTH = 16_384


@dataclass(frozen=True)
class Principal:
    subject: str
    org: str
    roles: frozenset[str]
    scopes: frozenset[str]
    token_id: str

    def has_role(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)


class KeySource(Protocol):
    async def key(self, kid: str) -> dict[str, Any] | None: ...


class JwksClient:
    """Signing keys of an identity provider, fetched from its JWKS URL and cached.

    An unknown kid triggers a refresh (the provider may have rotated), but at most
    once per `min_refresh_interval`, so a flood of made-up kids cannot hammer the
    provider. A failed refresh keeps the keys already known.
    """

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        ttl: float = 600.0,
        min_refresh_interval: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._ttl = ttl
        self._min_refresh_interval = min_refresh_interval
        self._timeout = timeout
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> dict[str, Any] | None:
        if kid in self._keys and self._fresh():
            return self._keys[kid]
        async with self._lock:
            # Whoever held the lock before us may have just refreshed.
            if (kid not in self._keys or not self._fresh()) and self._may_refresh():
                await self._refresh()
            return self._keys.get(kid)

    def _fresh(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at < self._ttl

    def _may_refresh(self) -> bool:
        return (
            self._attempted_at is None
            or self._clock() - self._attempted_at >= self._min_refresh_interval
        )

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        try:
            response = await self._http.get(self.url, timeout=self._timeout)
            response.raise_for_status()
            keys = _signing_keys(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("JWKS refresh from %s failed (%s); keeping cached keys", self.url, exc)
            return
        self._keys = keys
        self._fetched_at = self._clock()


def _signing_keys(document: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    return {
        key["kid"]: key
        for key in document["keys"]
        # `use` is optional in RFC 7517; a key marked for encryption never verifies.
        if isinstance(key, dict)
        and isinstance(key.get("kid"), str)
        and key.get("use", "sig") == "sig"
    }


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    kid: str
    key: dict[str, Any]  # the JWK that verified it, as the key source gave it then
    valid_until: float


class TokenVerifier:
    """Checks bearer tokens; a token already verified is recognised, not re-verified.

    Every request carries its token twice through the platform (gateway, then service),
    and a client sends the same token until it expires: re-checking the RSA signature
    each time was most of what a request cost. A remembered token is accepted only
    while it has not expired and the key that verified it is still the one its key
    source gives for that kid, so a retired or replaced key ends it at once.
    """

    REMEMBERED = 4096

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ("RS256",),
        leeway: int = 30,
        roles_claim: str = "roles",
        org_claim: str = "org",
        clock: Callable[[], float] = time.time,
    ) -> None:
        unsupported = set(algorithms) - RSA_ALGORITHMS
        if unsupported or not algorithms:
            raise ValueError(f"only RSA signatures are accepted, not {sorted(unsupported)}")
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway
        self._roles_path = roles_claim.split(".")
        self._org_claim = org_claim
        self._clock = clock
        # By digest: a token may be 16 KiB, a digest is 32 bytes.
        self._verified: dict[bytes, _Verified] = {}

    async def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_LENGTH:
            raise _reject("oversized token")
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        if known is not None:
            if self._clock() <= known.valid_until and await self._keys.key(known.kid) == known.key:
                return known.principal
            self._verified.pop(digest, None)  # another request may have dropped it meanwhile
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise _reject("unreadable header") from None
        alg, kid = self._check_header(header)
        jwk_dict = await self._keys.key(kid)
        claims = self._decode(token, self._public_key(jwk_dict, alg), alg)
        principal = self._principal(claims)
        assert jwk_dict is not None  # _public_key refused a missing key
        self._remember(digest, _Verified(principal, kid, jwk_dict, claims["exp"] + self._leeway))
        return principal

    def _remember(self, digest: bytes, verified: _Verified) -> None:
        if self.REMEMBERED < 1:
            return
        if len(self._verified) >= self.REMEMBERED:
            # The oldest first: dicts keep insertion order.
            del self._verified[next(iter(self._verified))]
        self._verified[digest] = verified

    def _check_header(self, header: Mapping[str, Any]) -> tuple[str, str]:
        # Checked before any key is touched, so `none`, HS256 keyed with our public key
        # and any other algorithm we did not choose are never even attempted.
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _reject("algorithm not allowed")
        if header.keys() & EMBEDDED_KEY_HEADERS:
            raise _reject("embedded key header")
        if "crit" in header:
            raise _reject("critical header extension")
        typ = header.get("typ", "JWT")
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") not in TYPES:
            raise _reject("wrong token type")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _reject("missing kid")
        return alg, kid

    def _public_key(self, key: dict[str, Any] | None, alg: str) -> Any:
        if key is None:
            raise _reject("unknown kid")
        if key.get("kty") != "RSA" or key.get("use", "sig") != "sig":
            raise _reject("key is not an RSA signing key")
        # A key published for one algorithm must not be used with another (RFC 8725 §3.1).
        if key.get("alg", alg) != alg:
            raise _reject("key bound to another algorithm")
        try:
            numbers = rsa.RSAPublicNumbers(_b64_int(key["e"]), _b64_int(key["n"]))
            public_key = numbers.public_key()
        except (KeyError, TypeError, ValueError):
            raise _reject("malformed key") from None
        if public_key.key_size < MIN_RSA_BITS:
            raise _reject("key too short")
        try:
            return jwk.construct(public_key, alg)
        except JWKError:
            raise _reject("malformed key") from None

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        options = {
            "require_exp": True,
            "require_iat": True,
            "require_iss": True,
            "require_aud": True,
            "require_sub": True,
            "verify_at_hash": False,
            "leeway": self._leeway,
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                options=options,
            )
        except ExpiredSignatureError:
            log.debug("token refused: expired")
            raise Unauthorized("Token expired.") from None
        # python-jose lets TypeError/OverflowError escape on odd claim types.
        except (JWTError, TypeError, ValueError, OverflowError):
            raise _reject("signature or claims invalid") from None
        self._check_times(claims)
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if name in claims and not _is_numeric_date(value):
                raise _reject(f"{name} is not a NumericDate")
        if claims["iat"] > self._clock() + self._leeway:
            raise _reject("issued in the future")

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        subject = claims["sub"]
        org = claims.get(self._org_claim)
        roles = _lookup(claims, self._roles_path)
        scope = claims.get("scope", "")
        token_id = claims.get("jti", "")
        if not subject or not isinstance(org, str) or not org:
            raise _reject("missing subject or organisation")
        if roles is None:
            roles = []
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise _reject("malformed roles")
        if not isinstance(scope, str):
            raise _reject("malformed scope")
        return Principal(
            subject=subject,
            org=org,
            roles=frozenset(roles),
            scopes=frozenset(scope.split()),
            token_id=token_id,
        )


def _reject(reason: str) -> Unauthorized:
    # The reason is ours, never token content: tokens carry subjects and org ids.
    log.debug("token refused: %s", reason)
    return Unauthorized("Invalid token.")


def _b64_int(value: str) -> int:
    if not isinstance(value, str):
        raise TypeError("JWK members are base64url strings")
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _is_numeric_date(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _lookup(claims: Mapping[str, Any], path: Sequence[str]) -> Any:
    """A claim by dotted path ("realm_access.roles"); None when any step is absent."""
    value: Any = claims
    for step in path:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise _reject("malformed roles")
        value = value.get(step)
    return value


VERIFIED = "nrm.verified_token"


async def verify_once(
    state: MutableMapping[str, Any], verifier: TokenVerifier, token: str
) -> Principal:
    """Verify a request's token once, however many layers ask (rate limits, the proxy)."""
    cached = state.get(VERIFIED)
    if cached is not None and cached[0] == token:
        if isinstance(cached[1], Unauthorized):
            raise cached[1]
        principal: Principal = cached[1]
        return principal
    try:
        principal = await verifier.verify(token)
    except Unauthorized as refused:
        state[VERIFIED] = (token, refused)
        raise
    state[VERIFIED] = (token, principal)
    return principal


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of an ASGI request's `Authorization: Bearer` header, if it has one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def current_principal(request: Request) -> Principal:
    token = bearer_token(request.scope["headers"])
    if token is None:
        raise Unauthorized("A bearer token is required.")
    state: MutableMapping[str, Any] = request.scope.setdefault("state", {})
    return await verify_once(state, request.app.state.verifier, token)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    if not roles:
        raise ValueError("require_roles needs at least one role")

    async def principal_with_role(principal: CurrentPrincipal) -> Principal:
        if not principal.has_role(*roles):
            raise Forbidden(f"Requires one of the roles: {', '.join(roles)}.")
        return principal

    return principal_with_role
