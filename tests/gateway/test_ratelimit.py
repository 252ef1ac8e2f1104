"""Rate limits at the gateway: token buckets per IP and per client, in memory or in Redis."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis

from gateway.clientip import client_ip, trusted_networks
from gateway.keys import SigningKeys
from gateway.ratelimit import (
    Bucket,
    Limiter,
    MemoryLimiter,
    Rate,
    RedisLimiter,
    Verdict,
    create_limiter,
)
from nrm.settings import Settings
from tests.gateway.conftest import CountingService, GatewayFactory
from tests.infra import RUN_ID
from tests.support import bearer, serving

SLOW = 0.001  # tokens per second: nothing refills while a test runs


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited(settings: Settings, **changes: object) -> Settings:
    """The test's settings with generous limits, except the ones a test tightens."""
    generous: dict[str, object] = {
        "rate_limit_per_ip": 1000.0,
        "rate_limit_ip_burst": 1000,
        "rate_limit_per_client": 1000.0,
        "rate_limit_client_burst": 1000,
        "rate_limit_token_per_ip": 1000.0,
        "rate_limit_token_burst": 1000,
    }
    return settings.model_copy(update=generous | changes)


async def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(clock)
    bucket = [Bucket("k", Rate(per_second=2.0, burst=3))]

    for _ in range(3):
        assert (await limiter.acquire(bucket)).allowed
    refused = await limiter.acquire(bucket)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.5)

    clock.now += 0.25
    assert (await limiter.acquire(bucket)).retry_after == pytest.approx(0.25)
    clock.now += 0.25
    assert (await limiter.acquire(bucket)).allowed
    assert not (await limiter.acquire(bucket)).allowed

    clock.now += 3600  # a long rest fills the bucket to its burst, not beyond
    results = [(await limiter.acquire(bucket)).allowed for _ in range(4)]
    assert results == [True, True, True, False]


async def takes_from_every_bucket_or_from_none(limiter: Limiter, prefix: str) -> None:
    small = Bucket(f"{prefix}small", Rate(per_second=SLOW, burst=1))
    large = Bucket(f"{prefix}large", Rate(per_second=SLOW, burst=3))

    assert (await limiter.acquire([small, large])).allowed
    assert not (await limiter.acquire([small, large])).allowed
    # The refused request took nothing from the large bucket: two tokens are left.
    assert [(await limiter.acquire([large])).allowed for _ in range(3)] == [True, True, False]


async def test_a_request_takes_from_every_bucket_or_from_none() -> None:
    await takes_from_every_bucket_or_from_none(MemoryLimiter(FakeClock()), "")


async def test_an_ip_over_its_budget_gets_429_problem_and_the_service_is_not_called(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    service = CountingService()
    app = gateway_factory(
        limited(settings, rate_limit_per_ip=SLOW, rate_limit_ip_burst=2),
        {"intake": service.client()},
    )
    async with serving(app) as gateway:
        answers = [await gateway.get("/api/v1/intake/cases") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert service.hits == 2


async def test_a_retry_after_is_whole_seconds_and_at_least_one(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    # At 2 tokens per second the next one is at most 0.5 s away; Retry-After still says 1.
    # (At 50 per second a slow machine let 20 ms pass between the two requests.)
    app = gateway_factory(limited(settings, rate_limit_per_ip=2.0, rate_limit_ip_burst=1), {})
    async with serving(app) as gateway:
        await gateway.get("/.well-known/jwks.json")
        refused = await gateway.get("/.well-known/jwks.json")

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"


async def test_health_probes_are_never_limited(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    app = gateway_factory(limited(settings, rate_limit_per_ip=SLOW, rate_limit_ip_burst=1), {})
    async with serving(app) as gateway:
        assert (await gateway.get("/.well-known/jwks.json")).status_code == 200
        assert (await gateway.get("/.well-known/jwks.json")).status_code == 429
        for _ in range(5):
            assert (await gateway.get("/healthz")).status_code == 200
            assert (await gateway.get("/readyz")).status_code == 200


async def test_each_client_has_a_budget_of_its_own(
    settings: Settings, gateway_factory: GatewayFactory, signing_keys: SigningKeys
) -> None:
    service = CountingService()
    app = gateway_factory(
        limited(settings, rate_limit_per_client=SLOW, rate_limit_client_burst=2),
        {"intake": service.client()},
    )
    first = bearer(signing_keys, settings, subject="client-a", org="org-a")
    same_subject_other_org = bearer(signing_keys, settings, subject="client-a", org="org-b")
    async with serving(app) as gateway:
        spent = [
            (await gateway.get("/api/v1/intake/x", headers=first)).status_code for _ in range(3)
        ]
        other = await gateway.get("/api/v1/intake/x", headers=same_subject_other_org)

    assert spent == [200, 200, 429]
    assert other.status_code == 200


async def test_an_invalid_token_counts_as_anonymous(
    settings: Settings, gateway_factory: GatewayFactory, signing_keys: SigningKeys
) -> None:
    service = CountingService()
    app = gateway_factory(
        limited(settings, rate_limit_per_client=SLOW, rate_limit_client_burst=1),
        {"intake": service.client()},
    )
    valid = bearer(signing_keys, settings)
    async with serving(app) as gateway:
        forged = [
            (await gateway.get("/api/v1/intake/x", headers={"Authorization": "Bearer forged"}))
            for _ in range(3)
        ]
        genuine = [(await gateway.get("/api/v1/intake/x", headers=valid)) for _ in range(2)]

    # No client bucket for a token that does not verify: only the (generous) IP one.
    # Whether it is refused as 401 is the proxy's call, not the limiter's.
    assert 429 not in [a.status_code for a in forged]
    assert [a.status_code for a in genuine] == [200, 429]


async def test_the_token_endpoint_has_a_stricter_budget_per_ip(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    app = gateway_factory(
        limited(settings, rate_limit_token_per_ip=SLOW, rate_limit_token_burst=2), {}
    )
    form = {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}
    async with serving(app) as gateway:
        tries = [(await gateway.post("/auth/token", data=form)).status_code for _ in range(3)]
        elsewhere = await gateway.get("/.well-known/jwks.json")

    assert 429 not in tries[:2]
    assert tries[2] == 429
    assert elsewhere.status_code == 200


async def test_a_zero_rate_turns_a_limit_off(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    app = gateway_factory(settings.model_copy(update={"rate_limit_per_ip": 0.0}), {})
    async with serving(app) as gateway:
        codes = {(await gateway.get("/.well-known/jwks.json")).status_code for _ in range(60)}
    assert codes == {200}


def _scope(peer: str, forwarded_for: str | None = None) -> dict[str, object]:
    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for else []
    return {"type": "http", "client": (peer, 5000), "headers": headers}


def test_forwarded_for_is_ignored_unless_a_trusted_proxy_sent_it() -> None:
    proxies = trusted_networks("10.0.0.0/8, 192.168.1.5")
    assert client_ip(_scope("203.0.113.9", "198.51.100.1"), ()) == "203.0.113.9"
    assert client_ip(_scope("203.0.113.9", "198.51.100.1"), proxies) == "203.0.113.9"


def test_the_client_is_the_first_hop_no_trusted_proxy_added() -> None:
    proxies = trusted_networks("10.0.0.0/8,192.168.1.5")
    # The caller forged the leftmost entry; the trusted proxies appended the rest.
    forwarded = "6.6.6.6, 198.51.100.7, 192.168.1.5"
    assert client_ip(_scope("10.1.2.3", forwarded), proxies) == "198.51.100.7"
    assert client_ip(_scope("10.1.2.3", "192.168.1.5"), proxies) == "192.168.1.5"
    assert client_ip(_scope("10.1.2.3"), proxies) == "10.1.2.3"


class NoFallback:
    """Stands where the limiter's own buckets would: a Redis test must not pass on them."""

    async def acquire(self, buckets: Sequence[Bucket]) -> Verdict:
        raise AssertionError("Redis failed and the limiter fell back to its own buckets")

    async def aclose(self) -> None:
        return None


def redis_only(redis_url: str) -> RedisLimiter:
    return RedisLimiter(Redis.from_url(redis_url), fallback=NoFallback())


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of the test's own; its keys are deleted afterwards."""
    prefix = f"nrm:rl:test-{RUN_ID}-{uuid.uuid4().hex[:8]}:"
    yield prefix
    redis = Redis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(match=f"{prefix}*"):
            await redis.delete(key)
    finally:
        await redis.aclose()


@pytest.mark.redis
async def test_two_gateways_sharing_redis_share_one_budget(
    settings: Settings, gateway_factory: GatewayFactory, redis_url: str, redis_prefix: str
) -> None:
    shared = limited(
        settings,
        redis_url=redis_url,
        rate_limit_prefix=redis_prefix,
        rate_limit_per_ip=SLOW,
        rate_limit_ip_burst=5,
    )
    first, second = CountingService(), CountingService()
    gateway_a = gateway_factory(shared, {"intake": first.client()})
    gateway_b = gateway_factory(shared, {"intake": second.client()})
    async with serving(gateway_a) as a, serving(gateway_b) as b:
        answers = [await (a, b)[i % 2].get("/api/v1/intake/x") for i in range(10)]

    assert [r.status_code for r in answers] == [200] * 5 + [429] * 5
    assert first.hits + second.hits == 5


@pytest.mark.redis
async def test_redis_buckets_refill_by_redis_time_and_their_keys_expire(
    redis_url: str, redis_prefix: str
) -> None:
    limiter = redis_only(redis_url)
    bucket = [Bucket(f"{redis_prefix}one", Rate(per_second=0.5, burst=1))]
    redis = Redis.from_url(redis_url)
    try:
        assert (await limiter.acquire(bucket)).allowed
        refused = await limiter.acquire(bucket)
        ttl_ms = await redis.pttl(f"{redis_prefix}one")
    finally:
        await limiter.aclose()
        await redis.aclose()

    assert not refused.allowed
    assert 1.0 < refused.retry_after <= 2.0  # a token comes back every 2 s
    # Full again after 2 s, plus a second's margin: then the key is gone by itself.
    assert 0 < ttl_ms <= 3000


@pytest.mark.redis
async def test_a_request_takes_from_every_redis_bucket_or_from_none(
    redis_url: str, redis_prefix: str
) -> None:
    limiter = redis_only(redis_url)
    try:
        await takes_from_every_bucket_or_from_none(limiter, redis_prefix)
    finally:
        await limiter.aclose()


@pytest.mark.redis
async def test_the_script_is_loaded_again_when_redis_has_forgotten_it(
    redis_url: str, redis_prefix: str
) -> None:
    redis = Redis.from_url(redis_url)
    limiter = RedisLimiter(redis, fallback=NoFallback())
    bucket = [Bucket(f"{redis_prefix}flush", Rate(per_second=SLOW, burst=2))]
    try:
        assert (await limiter.acquire(bucket)).allowed
        await redis.script_flush()  # as after a Redis restart or failover
        assert (await limiter.acquire(bucket)).allowed
        assert not (await limiter.acquire(bucket)).allowed
    finally:
        await limiter.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_an_unreachable_redis_fails_open_to_this_gateways_own_buckets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{_closed_port()}/0", _env_file=None)
    limiter = create_limiter(settings)
    bucket = [Bucket("nrm:rl:test:down", Rate(per_second=SLOW, burst=2))]
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
            verdicts = [(await limiter.acquire(bucket)).allowed for _ in range(3)]
    finally:
        await limiter.aclose()

    assert verdicts == [True, True, False], "still limited, by the gateway alone"
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1, "one warning per outage, not one per request"


async def test_a_gateway_keeps_answering_while_its_redis_is_down(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    service = CountingService()
    down = limited(settings, redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    app = gateway_factory(down, {"intake": service.client()})
    async with serving(app) as gateway:
        answer = await gateway.get("/api/v1/intake/x")
    assert answer.status_code == 200
    assert service.hits == 1
