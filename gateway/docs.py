"""One OpenAPI document for the whole platform, served by the gateway at /openapi.json.

It is the gateway's own paths plus each service's document, fetched through the same
upstream clients the proxy uses. Service schema names are prefixed with the service
(`intake_PingSent`) so two services' `HTTPValidationError` cannot collide. A service
that cannot be reached is left out and named under `x-nrm-unavailable`: the docs
never fail because one service is down.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from gateway.upstream import Upstreams
from nrm.errors import ProblemError

log = logging.getLogger(__name__)

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
TOKEN_URL = "/auth/token"  # noqa: S105 - a path, not a secret
# Open by the contract: no token needed, so Swagger UI shows no lock on them.
OPEN_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        TOKEN_URL,
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    }
)
SECURITY_SCHEMES: dict[str, Any] = {
    "oauth2": {
        "type": "oauth2",
        "description": "Machine clients use client credentials; people, their password.",
        "flows": {
            "clientCredentials": {"tokenUrl": TOKEN_URL, "scopes": {}},
            "password": {"tokenUrl": TOKEN_URL, "scopes": {}},
        },
    },
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
}
SECURITY: list[dict[str, list[str]]] = [{"oauth2": []}, {"bearer": []}]
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
SWAGGER_ASSETS = "https://cdn.jsdelivr.net"


class MergedOpenApi:
    """The merged document, rebuilt at most every `ttl` seconds (sooner while one is missing)."""

    def __init__(
        self,
        app: FastAPI,
        upstreams: Upstreams,
        services: Sequence[str],
        *,
        ttl: float = 60.0,
        degraded_ttl: float = 5.0,
        fetch_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._upstreams = upstreams
        self._services = tuple(services)
        self._ttl = ttl
        self._degraded_ttl = degraded_ttl
        self._fetch_timeout = fetch_timeout
        self._clock = clock
        self._cached: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        async with self._lock:  # a burst of readers on a cold cache makes one round of fetches
            if self._cached is None or self._clock() >= self._expires:
                fetched = await asyncio.gather(*(self._fetch(s) for s in self._services))
                self._cached = merge(self._own(), dict(zip(self._services, fetched, strict=True)))
                degraded = "x-nrm-unavailable" in self._cached
                self._expires = self._clock() + (self._degraded_ttl if degraded else self._ttl)
            return self._cached

    def _own(self) -> dict[str, Any]:
        app = self._app
        return get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        try:
            upstream = self._upstreams.get(service)
            async with asyncio.timeout(self._fetch_timeout):
                status, body = await upstream.fetch(f"/api/v1/{service}{OPENAPI_PATH}")
            if status != 200:
                raise ValueError(f"HTTP {status}")
            document = json.loads(body)
        except (ProblemError, TimeoutError, ValueError) as exc:
            log.warning("docs: %s's OpenAPI document unavailable (%s)", service, type(exc).__name__)
            return None
        if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
            log.warning("docs: %s's OpenAPI document is malformed", service)
            return None
        return document


def merge(
    gateway: Mapping[str, Any], services: Mapping[str, Mapping[str, Any] | None]
) -> dict[str, Any]:
    """The gateway's document with every service's paths and components added."""
    merged = copy.deepcopy(dict(gateway))
    merged["servers"] = [{"url": "/"}]
    merged["security"] = copy.deepcopy(SECURITY)
    components = merged.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(copy.deepcopy(SECURITY_SCHEMES))
    paths = merged.setdefault("paths", {})
    for path in OPEN_PATHS & paths.keys():
        for operation in _operations(paths[path]):
            operation["security"] = []
    tags: list[dict[str, Any]] = merged.setdefault("tags", [])
    # The gateway's own groups come first: a reader needs a token before anything else.
    listed = {tag["name"] for tag in tags}
    used = (t for item in paths.values() for op in _operations(item) for t in op.get("tags", []))
    tags += [{"name": tag} for tag in dict.fromkeys(used) if tag not in listed]
    unavailable: list[str] = []
    for name, document in services.items():
        if document is None:
            unavailable.append(name)
            continue
        service = _namespaced(name, document)
        prefix = f"/api/v1/{name}/"
        # Each service also lists its own /healthz, which the gateway does not route.
        routed = {p: item for p, item in service.get("paths", {}).items() if p.startswith(prefix)}
        for item in routed.values():
            for operation in _operations(item):
                operation["tags"] = [name]
        paths.update(routed)
        for section, entries in service.get("components", {}).items():
            components.setdefault(section, {}).update(entries)
        if routed:  # Swagger UI would show an empty group
            title = service.get("info", {}).get("title", name)
            tags.append({"name": name, "description": title})
    if unavailable:
        merged["x-nrm-unavailable"] = unavailable
    return merged


def _namespaced(service: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with every component renamed `<service>_<name>` and every $ref following it."""
    components: Mapping[str, Any] = document.get("components", {})
    # The gateway's schemes replace the service's own, which name nothing the caller can use.
    renamed = {
        section: {name: f"{service}_{name}" for name in entries}
        for section, entries in components.items()
        if section != "securitySchemes"
    }

    def follow(ref: str) -> str:
        if not ref.startswith("#/components/"):
            return ref
        section, _, rest = ref.removeprefix("#/components/").partition("/")
        escaped, slash, inner = rest.partition("/")
        new = renamed.get(section, {}).get(_unescape(escaped))
        return f"#/components/{section}/{_escape(new)}{slash}{inner}" if new else ref

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    out[key] = follow(value)
                elif key == "mapping" and isinstance(value, dict):  # discriminator targets
                    out[key] = {k: follow(v) if isinstance(v, str) else v for k, v in value.items()}
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    namespaced: dict[str, Any] = walk(dict(document))
    namespaced["components"] = {
        section: {renamed[section][name]: value for name, value in entries.items()}
        for section, entries in namespaced.get("components", {}).items()
        if section in renamed
    }
    return namespaced


def _operations(path_item: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for method, op in path_item.items() if method in HTTP_METHODS]


def _unescape(pointer_token: str) -> str:
    return pointer_token.replace("~1", "/").replace("~0", "~")


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


@functools.cache
def swagger_page() -> str:
    """Swagger UI on the merged document: its assets from the CDN FastAPI uses by default."""
    page = get_swagger_ui_html(
        openapi_url=OPENAPI_PATH,
        title="Open NRM API",
        oauth2_redirect_url=None,
        swagger_favicon_url="data:,",
        # No badge fetched from validator.swagger.io: the document stays on our side.
        swagger_ui_parameters={"validatorUrl": None},
    )
    return bytes(page.body).decode()


@functools.cache
def docs_content_security_policy() -> str:
    """The console's policy, opened only as far as Swagger UI needs, on /docs alone.

    Its one inline script (the page's own configuration) is allowed by its hash, not
    by 'unsafe-inline'; Swagger UI sets inline styles, which cannot run code.
    """
    inline = re.findall(r"<script>(.*?)</script>", swagger_page(), flags=re.DOTALL)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline
    )
    return (
        f"default-src 'self'; script-src 'self' {SWAGGER_ASSETS} {hashes}; "
        f"style-src 'self' {SWAGGER_ASSETS} 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


def install_docs(app: FastAPI, upstreams: Upstreams, services: Sequence[str]) -> None:
    """Serve the merged document and Swagger UI in place of FastAPI's own."""
    urls = (app.openapi_url, app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url)
    own = {url for url in urls if url}
    # base_app gives every app FastAPI's schema of itself; the gateway's is the merged one.
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in own]
    app.openapi_url = app.docs_url = app.redoc_url = None
    merged = MergedOpenApi(app, upstreams, services)

    @app.get(OPENAPI_PATH, include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(await merged.document())

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(swagger_page())
