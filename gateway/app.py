"""The gateway: signing keys and JWKS, and the verified way in to every service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from gateway.keys import SigningKeys
from gateway.proxy import Upstreams, forward
from nrm.app import Runtime, base_app
from nrm.db import Database
from nrm.health import health_router
from nrm.telemetry import instrument_app, instrument_engine

MIGRATIONS = Path(__file__).parent / "migrations"
PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def create_app(runtime: Runtime, *, keys: SigningKeys, upstreams: Upstreams) -> FastAPI:
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(runtime.settings.database_url("gateway"))
        instrument_engine(db.engine, runtime.tracer_provider)
        app.state.db = db
        app.state.verifier = runtime.verifier
        try:
            yield
        finally:
            await upstreams.aclose()
            await db.dispose()

    app = base_app("Open NRM", lifespan=lifespan)
    app.include_router(health_router())

    @app.get("/.well-known/jwks.json", tags=["identity"])
    async def jwks() -> dict[str, Any]:
        return keys.jwks()

    @app.get("/.well-known/openid-configuration", tags=["identity"])
    async def openid_configuration(request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return {
            "issuer": runtime.settings.jwt_issuer,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "token_endpoint": f"{base}/auth/token",
            "grant_types_supported": ["client_credentials", "password"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    @app.api_route("/api/v1/{service}/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
    async def proxy(service: str, path: str, request: Request) -> StreamingResponse:
        return await forward(request, upstreams.client(service))

    instrument_app(app, runtime.tracer_provider)
    return app
