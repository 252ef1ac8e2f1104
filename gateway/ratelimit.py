"""Token-bucket rate limits at the gateway: per client IP and per verified client.

Every request but the health probes draws one token from the bucket of its IP and,
when it carries a valid bearer token, from the bucket of that client (subject and
organisation); `/auth/token` also draws from a stricter per-IP bucket, since each try
there costs a password hash. A request is let through only if every bucket has a
token, and then takes one from each. One gateway keeps its buckets in memory; with
NRM_REDIS_URL several gateways share theirs in Redis, updated by one Lua script so
that they agree on one budget.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.clientip import IpNetwork, client_ip, trusted_networks
from nrm.auth import TokenVerifier, bearer_token, verify_once
from nrm.errors import TooManyRequests, Unauthorized, problem_response
from nrm.settings import Settings

log = logging.getLogger(__name__)

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})
TOKEN_PATH = "/auth/token"  # noqa: S105 - a path, not a secret


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.per_second > 0 and self.burst > 0


@dataclass(frozen=True)
class Bucket:
    key: str
    rate: Rate


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0


class Limiter(Protocol):
    async def acquire(self, buckets: Sequence[Bucket]) -> Verdict: ...

    async def aclose(self) -> None: ...


class MemoryLimiter:
    """Buckets in this process: enough for one gateway, and Redis's stand-in when it is down."""

    SWEEP_EVERY = 1024

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key -> (tokens, at, full_at); a bucket full again is the same as no entry.
        self._state: dict[str, tuple[float, float, float]] = {}
        self._calls = 0

    async def acquire(self, buckets: Sequence[Bucket]) -> Verdict:
        # No await in here: on one event loop the check and the take are atomic.
        now = self._clock()
        levels = [self._level(bucket, now) for bucket in buckets]
        wait = max(
            (
                (1 - level) / bucket.rate.per_second
                for bucket, level in zip(buckets, levels, strict=True)
                if level < 1
            ),
            default=0.0,
        )
        if wait == 0.0:
            for bucket, level in zip(buckets, levels, strict=True):
                tokens = level - 1
                full_at = now + (bucket.rate.burst - tokens) / bucket.rate.per_second
                self._state[bucket.key] = (tokens, now, full_at)
        self._sweep(now)
        return Verdict(allowed=wait == 0.0, retry_after=wait)

    async def aclose(self) -> None:
        self._state.clear()

    def _level(self, bucket: Bucket, now: float) -> float:
        tokens, at, _ = self._state.get(bucket.key, (bucket.rate.burst, now, now))
        return min(float(bucket.rate.burst), tokens + (now - at) * bucket.rate.per_second)

    def _sweep(self, now: float) -> None:
        # Bounds memory when many addresses pass by: full buckets need no entry.
        self._calls += 1
        if self._calls % self.SWEEP_EVERY == 0:
            self._state = {k: v for k, v in self._state.items() if v[2] > now}


# KEYS: the buckets; ARGV: per_second and burst of each, in the same order. The time
# is Redis's own, so gateways with skewed clocks still agree.
TAKE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  local level = math.min(burst, tokens + math.max(0, now - at) * rate)
  levels[i] = level
  if level < 1 then wait = math.max(wait, (1 - level) / rate) end
end
if wait > 0 then return {0, string.format('%.6f', wait)} end
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  redis.call('HSET', key, 'tokens', string.format('%.6f', levels[i] - 1),
             'at', string.format('%.6f', now))
  -- Once the bucket would be full again the key holds nothing worth keeping.
  local ttl = math.ceil((burst - levels[i] + 1) / rate * 1000) + 1000
  redis.call('PEXPIRE', key, string.format('%d', ttl))
end
return {1, '0'}
"""


class RedisLimiter:
    """Buckets in Redis, shared by every gateway that names the same NRM_REDIS_URL.

    When Redis cannot be reached the limiter fails open to this gateway's own
    buckets: the mechanism must keep answering the people it exists for (a victim, the
    officer or NGO worker helping them) even while the limiter's store is down. The
    price is that each gateway then enforces the budget alone. Redis is tried again
    after `cooldown` seconds, so a dead Redis costs one warning, not one per request.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        fallback: Limiter,
        cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        # EVALSHA, and EVAL + SCRIPT LOAD when Redis does not know the script yet.
        self._take = redis.register_script(TAKE_SCRIPT)
        self._fallback = fallback
        self._cooldown = cooldown
        self._clock = clock
        self._down_until = 0.0

    async def acquire(self, buckets: Sequence[Bucket]) -> Verdict:
        if self._clock() < self._down_until:
            return await self._fallback.acquire(buckets)
        args: list[float | int] = []
        for bucket in buckets:
            args += [bucket.rate.per_second, bucket.rate.burst]
        try:
            allowed, wait = await self._take(keys=[b.key for b in buckets], args=args)
        except (RedisError, OSError) as exc:
            log.warning(
                "rate limits: Redis unreachable (%s); using this gateway's own buckets for %.0f s",
                type(exc).__name__,
                self._cooldown,
            )
            self._down_until = self._clock() + self._cooldown
            return await self._fallback.acquire(buckets)
        return Verdict(allowed=bool(allowed), retry_after=float(wait))

    async def aclose(self) -> None:
        await self._redis.aclose()


def create_limiter(settings: Settings) -> Limiter:
    if not settings.redis_url:
        return MemoryLimiter()
    redis = Redis.from_url(
        settings.redis_url,
        # Every request waits on this call: a slow or dead Redis must cost little.
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    return RedisLimiter(redis, fallback=MemoryLimiter())


@dataclass(frozen=True)
class Limits:
    per_ip: Rate
    per_client: Rate
    token_per_ip: Rate
    prefix: str = "nrm:rl:"

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            per_ip=Rate(settings.rate_limit_per_ip, settings.rate_limit_ip_burst),
            per_client=Rate(settings.rate_limit_per_client, settings.rate_limit_client_burst),
            token_per_ip=Rate(settings.rate_limit_token_per_ip, settings.rate_limit_token_burst),
            prefix=settings.rate_limit_prefix,
        )

    def key(self, kind: str, identity: str) -> str:
        # Hashed: a key then says nothing readable about who or where from.
        return f"{self.prefix}{kind}:{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: Limiter,
        limits: Limits,
        verifier: TokenVerifier,
        trusted_proxies: Sequence[IpNetwork] = (),
    ) -> None:
        self.app = app
        self._limiter = limiter
        self._limits = limits
        self._verifier = verifier
        self._trusted = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        buckets = await self._buckets(scope)
        verdict = await self._limiter.acquire(buckets) if buckets else Verdict(allowed=True)
        if verdict.allowed:
            await self.app(scope, receive, send)
            return
        response = problem_response(
            TooManyRequests.status,
            TooManyRequests.title,
            TooManyRequests.slug,
            detail="Too many requests; try again after the time in Retry-After.",
            instance=scope["path"],
            headers={"Retry-After": str(max(1, math.ceil(verdict.retry_after)))},
        )
        await response(scope, receive, send)

    async def _buckets(self, scope: Scope) -> list[Bucket]:
        limits = self._limits
        ip = client_ip(scope, self._trusted)
        wanted = [(limits.per_ip, "ip", ip)]
        if scope["path"] == TOKEN_PATH:
            wanted.append((limits.token_per_ip, "token-ip", ip))
        if limits.per_client.enabled and (token := bearer_token(scope["headers"])):
            try:
                principal = await verify_once(scope.setdefault("state", {}), self._verifier, token)
            except Unauthorized:
                pass  # Whether that is a 401 is the route's call; here it is just anonymous.
            else:
                client = f"{principal.org}\0{principal.subject}"
                wanted.append((limits.per_client, "client", client))
        return [Bucket(limits.key(kind, who), rate) for rate, kind, who in wanted if rate.enabled]


def install_rate_limits(
    app: FastAPI, settings: Settings, limiter: Limiter, verifier: TokenVerifier
) -> None:
    app.add_middleware(
        RateLimitMiddleware,
        limiter=limiter,
        limits=Limits.from_settings(settings),
        verifier=verifier,
        trusted_proxies=trusted_networks(settings.trusted_proxies),
    )
