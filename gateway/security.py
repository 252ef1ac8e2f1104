"""The headers every gateway answer carries, and which browser origins may call the API."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.docs import DOCS_PATH, docs_content_security_policy
from nrm.errors import problem_response
from nrm.settings import Settings

# Fit for the thin console served from this origin: nothing loads from elsewhere.
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# Without includeSubDomains: other hosts of the operator's domain are not ours to pin.
HSTS = "max-age=31536000"
# Case data and tokens must never sit in a shared (or any) cache.
NO_STORE_PREFIXES = ("/api/", "/auth/token")

CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"]
CORS_EXPOSED = ["Location", "Retry-After", "X-Request-ID"]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool, csp_by_path: Mapping[str, str]) -> None:
        self.app = app
        self._hsts = hsts
        self._csp_by_path = dict(csp_by_path)
        # Every answer passes here: the headers for a path are encoded once, not per answer.
        self._encoded: dict[tuple[str, bool], list[tuple[bytes, bytes]]] = {}

    def headers_for(self, path: str) -> dict[str, str]:
        headers = {**ALWAYS, "Content-Security-Policy": self._csp_by_path.get(path, CONSOLE_CSP)}
        if path.startswith(NO_STORE_PREFIXES):
            headers["Cache-Control"] = "no-store"
        if self._hsts:
            headers["Strict-Transport-Security"] = HSTS
        return headers

    def _encoded_for(self, path: str) -> list[tuple[bytes, bytes]]:
        # Paths vary without end; what decides the headers does not.
        csp_path = path if path in self._csp_by_path else ""
        kind = (csp_path, path.startswith(NO_STORE_PREFIXES))
        if (encoded := self._encoded.get(kind)) is None:
            encoded = [
                (name.lower().encode(), value.encode())
                for name, value in self.headers_for(csp_path or path).items()
            ]
            self._encoded[kind] = encoded
        return encoded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ours = self._encoded_for(scope["path"])
        names = {name for name, _ in ours}
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # The gateway's policy wins over a service's.
                message["headers"] = [
                    header
                    for header in message.get("headers", ())
                    if header[0].lower() not in names
                ] + ours
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if started:
                raise
            # Starlette answers an unexpected error outside every middleware, so its 500
            # would go out bare; answer it here. The app's handler still logs the error.
            answer = problem_response(500, "Internal error", "internal", instance=scope["path"])
            await answer(scope, receive, send_with_headers)
            raise


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add CORS and the headers; call it last, so they wrap every other middleware's answer."""
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    if origins:
        # No credentials: the API takes bearer tokens, never cookies.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts=settings.env == "prod",
        csp_by_path={DOCS_PATH: docs_content_security_policy()},
    )
