"""Security headers on every gateway answer, and CORS only for configured origins."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from gateway.security import CONSOLE_CSP
from nrm.settings import Settings
from tests.gateway.conftest import CountingService, GatewayFactory
from tests.support import serving

CONSOLE = "https://console.example.org"
PREFLIGHT = {
    "Origin": CONSOLE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, x-request-id",
}


def assert_protected(answer: httpx.Response) -> None:
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["content-security-policy"] == CONSOLE_CSP
    assert "strict-transport-security" not in answer.headers


async def test_a_proxied_answer_carries_the_gateways_headers_over_the_services(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    careless = CountingService(
        headers={"X-Frame-Options": "SAMEORIGIN", "Cache-Control": "public, max-age=600"}
    )
    app = gateway_factory(settings, {"intake": careless.client()})
    async with serving(app) as gateway:
        answer = await gateway.get("/api/v1/intake/cases")

    assert answer.status_code == 200
    assert careless.hits == 1
    assert_protected(answer)
    assert answer.headers.get_list("x-frame-options") == ["DENY"]
    assert answer.headers.get_list("cache-control") == ["no-store"]


async def test_a_problem_answer_carries_the_headers(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    async with serving(gateway_factory(settings, {})) as gateway:
        answer = await gateway.get("/api/v1/payroll/anything")

    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert_protected(answer)
    assert answer.headers["cache-control"] == "no-store"


async def test_a_refusal_for_too_many_requests_carries_the_headers(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    tight = settings.model_copy(update={"rate_limit_per_ip": 0.001, "rate_limit_ip_burst": 1})
    async with serving(gateway_factory(tight, {})) as gateway:
        await gateway.get("/api/v1/intake/x")
        answer = await gateway.get("/api/v1/intake/x")

    assert answer.status_code == 429
    assert_protected(answer)
    assert answer.headers["cache-control"] == "no-store"


async def test_an_unexpected_error_still_carries_the_headers(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    app = gateway_factory(settings, {})

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    async with serving(app) as gateway:
        answer = await gateway.get("/boom")

    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert_protected(answer)


async def test_token_endpoint_answers_are_never_cached(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    async with serving(gateway_factory(settings, {})) as gateway:
        answer = await gateway.post("/auth/token", data={"grant_type": "client_credentials"})
        keys = await gateway.get("/.well-known/jwks.json")

    assert answer.headers["cache-control"] == "no-store"
    assert_protected(answer)
    assert "no-store" not in keys.headers.get("cache-control", ""), "public keys may be cached"


async def test_the_docs_page_may_run_only_its_own_inline_script(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    async with serving(gateway_factory(settings, {})) as gateway:
        page = await gateway.get("/docs")

    policy = page.headers["content-security-policy"]
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src
    assert "'unsafe-eval'" not in script_src
    (inline,) = re.findall(r"<script>(.*?)</script>", page.text, flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in script_src
    assert "frame-ancestors 'none'" in policy


async def test_strict_transport_security_is_sent_only_in_production(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    production = settings.model_copy(update={"env": "prod"})
    async with serving(gateway_factory(production, {})) as gateway:
        answer = await gateway.get("/healthz")
    async with serving(gateway_factory(settings, {})) as gateway:
        development = await gateway.get("/healthz")

    assert answer.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in development.headers


async def test_without_configured_origins_no_cors_headers_are_sent(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    service = CountingService()
    async with serving(gateway_factory(settings, {"intake": service.client()})) as gateway:
        simple = await gateway.get("/api/v1/intake/x", headers={"Origin": CONSOLE})
        preflight = await gateway.options("/api/v1/intake/x", headers=PREFLIGHT)

    assert simple.status_code == 200
    for answer in (simple, preflight):
        assert not [h for h in answer.headers if h.startswith("access-control-")]
        assert_protected(answer)


@pytest.fixture
def cors_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"cors_origins": f"{CONSOLE}, https://other.example.org"})


async def test_a_configured_origin_may_call_the_api_without_credentials(
    cors_settings: Settings, gateway_factory: GatewayFactory
) -> None:
    service = CountingService()
    async with serving(gateway_factory(cors_settings, {"intake": service.client()})) as gateway:
        simple = await gateway.get("/api/v1/intake/x", headers={"Origin": CONSOLE})
        preflight = await gateway.options("/api/v1/intake/x", headers=PREFLIGHT)

    assert simple.headers["access-control-allow-origin"] == CONSOLE
    assert "access-control-allow-credentials" not in simple.headers
    assert "retry-after" in simple.headers["access-control-expose-headers"].lower()
    assert_protected(simple)

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == CONSOLE
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for name in ("authorization", "content-type", "idempotency-key", "x-request-id"):
        assert name in allowed
    assert "access-control-allow-credentials" not in preflight.headers
    assert_protected(preflight)


async def test_another_origin_is_not_allowed(
    cors_settings: Settings, gateway_factory: GatewayFactory
) -> None:
    elsewhere = {**PREFLIGHT, "Origin": "https://evil.example.com"}
    async with serving(gateway_factory(cors_settings, {})) as gateway:
        preflight = await gateway.options("/api/v1/intake/x", headers=elsewhere)
        simple = await gateway.get("/healthz", headers={"Origin": "https://evil.example.com"})

    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_a_header_outside_the_list_is_refused_in_preflight(
    cors_settings: Settings, gateway_factory: GatewayFactory
) -> None:
    odd = {**PREFLIGHT, "Access-Control-Request-Headers": "x-internal-override"}
    async with serving(gateway_factory(cors_settings, {})) as gateway:
        preflight = await gateway.options("/api/v1/intake/x", headers=odd)

    assert preflight.status_code == 400
