"""Reverse proxy from `/api/v1/<service>/...` to the service, path unchanged.

Nearly every request to the gateway passes here, so it is bare ASGI, reached from a
middleware inside the request log: no routing through the gateway's own routes, no
dependency injection, no request object, bodies streamed both ways as they come.
The same code serves both modes; only the upstream differs (see upstream.py): in
`nrm up` the service app runs in this process, in split mode it is NRM_<C>_URL.
The token is passed on, and the service verifies it again.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

from opentelemetry import propagate
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.clientip import IpNetwork, client_ip
from gateway.scopes import check_scope
from gateway.upstream import UpstreamRequest, Upstreams
from nrm.auth import TokenVerifier, bearer_token, verify_once
from nrm.errors import BadRequest, ProblemError, Unauthorized, problem_response

# RFC 9110 section 7.6.1, plus what a proxy must set itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "traceparent",
        "tracestate",
        # The gateway's own server has met a caller's Expect: 100-continue already.
        "expect",
    }
)
REQUEST_ID = "x-request-id"
# The gateway's server answers with its own Date (one per answer, RFC 9110 6.6.1), its own
# request id, and no Server header naming what runs behind it.
OURS_IN_ANSWERS = frozenset({REQUEST_ID.encode(), b"date", b"server"})
PREFIX = "/api/v1/"
PROXY_PATH = PREFIX + "{service}/{path:path}"
PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
DOT_SEGMENTS = frozenset({".", ".."})


def end_to_end(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers a proxy passes on: not hop-by-hop, nor named in Connection."""
    named_in_connection = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    return [
        (name, value)
        for name, value in headers
        if (lowered := name.decode("latin-1").lower()) not in HOP_BY_HOP
        and lowered not in named_in_connection
    ]


def _forwarded_headers(
    scope: Scope, request_id: str, caller_ip: str
) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The headers for the service, and whether the caller sent a body."""
    received: list[tuple[bytes, bytes]] = scope["headers"]
    has_body = any(name in (b"content-length", b"transfer-encoding") for name, _ in received)
    # The caller's own forwarding claims and request id are replaced, not trusted.
    headers = [
        (name, value)
        for name, value in end_to_end(received)
        if not name.lower().startswith(b"x-forwarded-") and name.lower() != REQUEST_ID.encode()
    ]
    host = next((value for name, value in received if name == b"host"), b"")
    headers += [
        (b"x-forwarded-for", caller_ip.encode()),
        (b"x-forwarded-proto", scope["scheme"].encode()),
        (b"x-forwarded-host", host),
        (REQUEST_ID.encode(), request_id.encode()),
    ]
    trace_context: dict[str, str] = {}
    propagate.inject(trace_context)  # the gateway's own span becomes the service's parent
    headers += [(name.encode(), value.encode()) for name, value in trace_context.items()]
    return headers, has_body


class CallerLeft(ConnectionError):
    """The caller hung up before its request body ended."""


async def caller_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # Raised, not ended: a body cut short must not reach the service as whole.
            raise CallerLeft("the caller left before the end of its request")
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body", False):
            return


class UpstreamBroke(RuntimeError):
    """The service's answer failed after its status line had gone out: no problem to send."""


class Proxy:
    """The ASGI endpoint of the proxy route; errors before the answer starts are raised."""

    def __init__(
        self,
        upstreams: Upstreams,
        verifier: TokenVerifier,
        trusted_proxies: Sequence[IpNetwork],
    ) -> None:
        self._upstreams = upstreams
        self._verifier = verifier
        self._trusted = tuple(trusted_proxies)

    def serves(self, service: str) -> bool:
        return self._upstreams.has(service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        upstream = self._upstreams.get(scope["path_params"]["service"])
        if any(segment in DOT_SEGMENTS for segment in scope["path_params"]["path"].split("/")):
            # A client library may resolve them on the way on (httpx does), and then the
            # request would reach another collection than the one its scope was checked for.
            raise BadRequest("A path may not hold '.' or '..' segments.")
        if any(name == b"authorization" for name, _ in scope["headers"]):
            # A bad token stops here; a good one is passed on and verified again.
            token = bearer_token(scope["headers"])
            if token is None:
                raise Unauthorized("A bearer token is required.")
            principal = await verify_once(scope.setdefault("state", {}), self._verifier, token)
            check_scope(principal, scope["method"], scope["path_params"]["path"])
        request_id = _header(scope, REQUEST_ID.encode()) or str(uuid.uuid4())
        headers, has_body = _forwarded_headers(scope, request_id, client_ip(scope, self._trusted))
        answer = await upstream.open(
            UpstreamRequest(
                method=scope["method"],
                target=_target(scope),
                headers=headers,
                body=caller_body(receive) if has_body else None,
            )
        )
        try:
            response_headers = [
                (name, value)
                for name, value in end_to_end(answer.headers)
                if name.lower() not in OURS_IN_ANSWERS
            ]
            response_headers.append((REQUEST_ID.encode(), request_id.encode()))
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status,
                    "headers": response_headers,
                }
            )
            try:
                async for chunk in answer.body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except ProblemError as broke:
                raise UpstreamBroke(broke.detail) from None
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await answer.close()


class ProxyMiddleware:
    """Hands a known service's requests to the proxy before the gateway's own routing.

    The proxy route stays in the router too: there it answers what this lets pass, a
    service nobody knows (404) and methods the proxy does not carry (405).
    """

    def __init__(self, app: ASGIApp, *, proxy: Proxy, route: BaseRoute) -> None:
        self.app = app
        self._proxy = proxy
        self._route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"] if scope["type"] == "http" else ""
        service, slash, rest = path.removeprefix(PREFIX).partition("/")
        ours = path.startswith(PREFIX) and slash and scope["method"] in PROXY_METHODS
        if not (ours and self._proxy.serves(service)):
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route  # the request log names the route, never the path
        scope["path_params"] = {"service": service, "path": rest}
        try:
            await self._proxy(scope, receive, send)
        except ProblemError as problem:
            response = problem_response(
                problem.status,
                problem.title,
                problem.slug,
                detail=problem.detail,
                instance=scope["path"],
                extra=problem.extra,
                headers=problem.headers,
            )
            await response(scope, receive, send)


def _target(scope: Scope) -> str:
    """Path and query exactly as the caller sent them, still percent-encoded: decoded,
    %2F would be a new path segment and %0D%0A a line break in the service's request line."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope["query_string"]
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            decoded: str = value.decode("latin-1")
            return decoded
    return None
