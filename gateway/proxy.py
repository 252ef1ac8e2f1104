"""Reverse proxy from `/api/v1/<service>/...` to the service, path unchanged.

The same code serves both modes: in `nrm up` the upstream client talks to the
service app in-process (ASGI transport); in split mode it talks HTTP to NRM_<C>_URL.
Bodies stream both ways; the token is passed on, and the service verifies it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import httpx
from fastapi import Request
from fastapi.responses import StreamingResponse
from opentelemetry import propagate
from starlette.background import BackgroundTask

from nrm.errors import BadGateway, GatewayTimeout, NotFound

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
        "content-length",
        "traceparent",
        "tracestate",
    }
)
REQUEST_ID = "x-request-id"


class Upstreams:
    def __init__(self, clients: Mapping[str, httpx.AsyncClient]) -> None:
        self._clients = dict(clients)

    def client(self, service: str) -> httpx.AsyncClient:
        client = self._clients.get(service)
        if client is None:
            raise NotFound("No such API.")
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


def _end_to_end(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    named_in_connection = {
        token.strip().lower() for token in headers.get("connection", "").split(",")
    }
    return [
        (k, v)
        for k, v in headers.items()
        if k.lower() not in HOP_BY_HOP and k.lower() not in named_in_connection
    ]


def _forwarded_headers(request: Request, request_id: str, caller_ip: str) -> list[tuple[str, str]]:
    # The caller's own forwarding claims and request id are replaced, not trusted.
    headers = [
        (k, v)
        for k, v in _end_to_end(request.headers)
        if not k.lower().startswith("x-forwarded-") and k.lower() != REQUEST_ID
    ]
    headers += [
        ("x-forwarded-for", caller_ip),
        ("x-forwarded-proto", request.url.scheme),
        ("x-forwarded-host", request.headers.get("host", "")),
        (REQUEST_ID, request_id),
    ]
    trace_context: dict[str, str] = {}
    propagate.inject(trace_context)  # the gateway's own span becomes the service's parent
    headers += list(trace_context.items())
    return headers


async def forward(
    request: Request, client: httpx.AsyncClient, *, caller_ip: str
) -> StreamingResponse:
    request_id = request.headers.get(REQUEST_ID) or str(uuid.uuid4())
    upstream_request = client.build_request(
        request.method,
        request.url.path,
        params=request.url.query,
        headers=_forwarded_headers(request, request_id, caller_ip),
        content=request.stream(),
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.TimeoutException:
        raise GatewayTimeout("The service did not answer in time.") from None
    except httpx.TransportError:
        raise BadGateway("The service cannot be reached.") from None
    headers = dict(_end_to_end(upstream.headers))
    headers[REQUEST_ID] = request_id
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=headers,
        background=BackgroundTask(upstream.aclose),
    )
