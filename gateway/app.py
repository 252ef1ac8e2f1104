"""The gateway: signing keys and JWKS, and the verified way in to every service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.middleware import Middleware
from starlette.routing import Route

from gateway import routes, token
from gateway.clientip import trusted_networks
from gateway.docs import install_docs
from gateway.keys import SigningKeys
from gateway.proxy import PROXY_METHODS, PROXY_PATH, Proxy, ProxyMiddleware
from gateway.ratelimit import create_limiter, install_rate_limits
from gateway.security import install_security
from gateway.throttle import SignInThrottle, ThrottlePolicy
from gateway.upstream import Upstreams
from nrm.app import Runtime, base_app, bookkeeping
from nrm.db import Database
from nrm.health import health_router
from nrm.settings import SERVICES
from nrm.telemetry import instrument_app, instrument_engine

MIGRATIONS = Path(__file__).parent / "migrations"
ASYNCAPI_PATH = "/asyncapi.json"


def create_app(
    runtime: Runtime,
    *,
    keys: SigningKeys,
    upstreams: Upstreams,
    events: Mapping[str, Any] | None = None,
) -> FastAPI:
    """`events`: the AsyncAPI document the gateway serves at /asyncapi.json, if any."""
    limiter = create_limiter(runtime.settings)
    trusted_proxies = trusted_networks(runtime.settings.trusted_proxies)

    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(runtime.settings.database_url("gateway"))
        instrument_engine(db.engine, runtime.tracer_provider)
        app.state.db = db
        app.state.verifier = runtime.verifier
        app.state.settings = runtime.settings
        app.state.keys = keys
        app.state.throttle = SignInThrottle(db, ThrottlePolicy())
        app.state.trusted_proxies = trusted_proxies
        app.state.bus = runtime.bus
        try:
            # Identity changes (users, organisations) go out as events, for notify's recipients.
            async with bookkeeping(db, runtime):
                yield
        finally:
            await limiter.aclose()
            await upstreams.aclose()
            await db.dispose()

    proxy = Proxy(upstreams, runtime.verifier, trusted_proxies)
    # Also in the router, after the gateway's own /api/v1/gateway routes (see ProxyMiddleware).
    proxy_route = Route(PROXY_PATH, proxy, methods=PROXY_METHODS)
    app = base_app(
        "Open NRM",
        lifespan=lifespan,
        innermost=[Middleware(ProxyMiddleware, proxy=proxy, route=proxy_route)],
    )
    app.include_router(health_router())
    app.include_router(token.router)
    app.include_router(routes.router)  # before the proxy: /api/v1/gateway is the gateway's own

    if events is not None:

        @app.get(ASYNCAPI_PATH, include_in_schema=False)
        async def asyncapi() -> Mapping[str, Any]:
            return events

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
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "client_secret_basic",
            ],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    app.router.routes.append(proxy_route)

    install_docs(app, upstreams, SERVICES)
    # Innermost first: limits run before any route; CORS and the headers wrap even a 429.
    install_rate_limits(app, runtime.settings, limiter, runtime.verifier)
    install_security(app, runtime.settings)
    instrument_app(app, runtime.tracer_provider)
    return app
