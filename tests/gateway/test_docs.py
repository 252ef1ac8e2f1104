"""The gateway's /openapi.json merges the services' documents; /docs shows it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate

from gateway.docs import MergedOpenApi, merge
from gateway.keys import SigningKeys
from gateway.upstream import Upstreams
from nrm.bus import InMemoryBus
from nrm.settings import Settings
from services.intake.app import create_app as create_intake
from services.notify.app import create_app as create_notify
from tests.e2e.processes import free_port
from tests.gateway.conftest import GatewayFactory
from tests.support import json_refs, resolve_ref, runtime_for, serving

PING = "/api/v1/intake/diagnostics/pings"
RECEIPT = "/api/v1/notify/diagnostics/pings/{ping_id}"


def in_process(app: FastAPI, name: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url=f"http://{name}.internal")


def nowhere() -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}")


@pytest.fixture
async def merged(
    settings: Settings, signing_keys: SigningKeys, gateway_factory: GatewayFactory
) -> dict[str, Any]:
    """The merged document of a gateway with real intake and notify, and referral down."""
    runtime = runtime_for(settings, InMemoryBus(), signing_keys)
    upstreams = {
        "intake": in_process(create_intake(runtime), "intake"),
        "notify": in_process(create_notify(runtime), "notify"),
        "referral": nowhere(),
    }
    async with serving(gateway_factory(settings, upstreams)) as gateway:
        answer = await gateway.get("/openapi.json")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


async def test_merged_document_has_the_gateways_and_the_services_paths(
    merged: dict[str, Any],
) -> None:
    paths = merged["paths"]
    assert PING in paths
    assert RECEIPT in paths
    assert {"/healthz", "/readyz", "/.well-known/jwks.json"} <= paths.keys()
    assert paths[PING]["post"]["tags"] == ["intake"]
    assert paths[RECEIPT]["get"]["tags"] == ["notify"]
    tags = [tag["name"] for tag in merged["tags"]]
    assert tags.index("identity") < tags.index("intake") < tags.index("notify")
    assert merged["servers"] == [{"url": "/"}]


async def test_every_ref_in_the_merged_document_resolves(merged: dict[str, Any]) -> None:
    found = list(json_refs(merged))
    assert "#/components/schemas/intake_PingSent" in found
    assert "#/components/schemas/notify_PingReceiptPublic" in found
    for ref in found:
        resolve_ref(merged, ref)


async def test_a_service_that_is_down_is_left_out_and_named(merged: dict[str, Any]) -> None:
    assert merged["x-nrm-unavailable"] == ["referral", "fund"]
    assert not [p for p in merged["paths"] if p.startswith(("/api/v1/referral/", "/api/v1/fund"))]


async def test_oauth2_client_credentials_and_password_flows_are_described(
    merged: dict[str, Any],
) -> None:
    schemes = merged["components"]["securitySchemes"]
    flows = next(s["flows"] for s in schemes.values() if s["type"] == "oauth2")
    assert flows["clientCredentials"]["tokenUrl"] == "/auth/token"
    assert flows["password"]["tokenUrl"] == "/auth/token"
    bearer = next(name for name, s in schemes.items() if s.get("scheme") == "bearer")
    assert schemes[bearer]["bearerFormat"] == "JWT"
    assert {name for requirement in merged["security"] for name in requirement} == set(schemes)
    # Open by the contract, so no lock is shown on them; the services' paths keep it.
    assert merged["paths"]["/.well-known/jwks.json"]["get"]["security"] == []
    assert "security" not in merged["paths"][PING]["post"]


async def test_the_merged_document_is_valid_openapi_3_1(merged: dict[str, Any]) -> None:
    assert merged["openapi"].startswith("3.1")
    validate(merged)


def test_the_same_schema_name_in_two_services_does_not_collide() -> None:
    def service_document(field: str) -> dict[str, Any]:
        thing = {"$ref": "#/components/schemas/Thing"}
        return {
            "info": {"title": "x", "version": "1"},
            "paths": {
                "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}},
                f"/api/v1/{field}/things": {
                    "get": {
                        "responses": {
                            "200": {
                                "description": "ok",
                                "content": {"application/json": {"schema": thing}},
                            }
                        }
                    }
                },
            },
            "components": {
                "schemas": {"Thing": {"type": "object", "properties": {field: {"type": "string"}}}}
            },
        }

    own = {"openapi": "3.1.0", "info": {"title": "g", "version": "1"}, "paths": {}}
    document = merge(
        own, {"fund": service_document("fund"), "referral": service_document("referral")}
    )

    schemas = document["components"]["schemas"]
    assert set(schemas) == {"fund_Thing", "referral_Thing"}
    assert schemas["fund_Thing"]["properties"].keys() == {"fund"}
    ok = document["paths"]["/api/v1/referral/things"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/referral_Thing"
    }
    assert "/healthz" not in document["paths"], "a service's own probes are not routed here"
    validate(document)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingSchemaService:
    def __init__(self, name: str) -> None:
        self.name = name
        self.fetches = 0
        self.up = True

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if not self.up:
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(200, json={"openapi": "3.1.0", "paths": {}})


async def test_the_merged_document_is_cached_and_a_missing_service_retried_sooner() -> None:
    clock = Clock()
    intake = CountingSchemaService("intake")
    intake.up = False
    client = httpx.AsyncClient(transport=httpx.MockTransport(intake.handler), base_url="http://x")
    merged = MergedOpenApi(FastAPI(), Upstreams({"intake": client}), ["intake"], clock=clock)
    try:
        assert (await merged.document())["x-nrm-unavailable"] == ["intake"]
        intake.up = True
        clock.now += 4.0
        await merged.document()
        assert intake.fetches == 1, "served from the cache"
        clock.now += 1.0
        assert "x-nrm-unavailable" not in await merged.document()
        assert intake.fetches == 2, "an incomplete document is rebuilt after a few seconds"
        clock.now += 59.0
        await merged.document()
        assert intake.fetches == 2, "a complete one is kept for a minute"
        clock.now += 1.0
        await merged.document()
        assert intake.fetches == 3
    finally:
        await client.aclose()


async def test_docs_page_is_swagger_ui_on_the_merged_document(
    settings: Settings, gateway_factory: GatewayFactory
) -> None:
    async with serving(gateway_factory(settings, {})) as gateway:
        page = await gateway.get("/docs")
        schema = await gateway.get("/openapi.json")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in page.text
    assert "url: '/openapi.json'" in page.text
    assert "validator.swagger.io" not in page.text
    assert schema.json()["x-nrm-unavailable"] == ["intake", "referral", "fund", "notify"]
