"""How the gateway reaches a service: in this process (ASGI) or over HTTP.

`nrm up` hands the gateway httpx clients bound to the service apps themselves; split
mode talks HTTP to NRM_<C>_URL through aiohttp, whose connection pool stays cheap
under concurrency (httpx's rescans every pooled connection, with a socket poll each,
on every request: at 16 concurrent requests that was two thirds of the gateway's CPU).
Both stream bodies both ways and answer failures as 502/504 problems.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

from nrm.errors import BadGateway, GatewayTimeout, NotFound
from nrm.http import without_cookies

UNREACHABLE = "The service cannot be reached."
CONNECTIONS = 256
TOO_SLOW = "The service did not answer in time."


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    target: str  # path and query, exactly as the caller sent them
    headers: list[tuple[bytes, bytes]]
    body: AsyncIterator[bytes] | None


@dataclass(frozen=True)
class UpstreamAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]


class Upstream(Protocol):
    async def open(self, request: UpstreamRequest) -> UpstreamAnswer:
        """Send the request; the answer's body is read as it arrives. Raises 502/504."""
        ...

    async def fetch(self, path: str) -> tuple[int, bytes]:
        """A small GET read whole (the services' OpenAPI documents). Raises 502/504."""
        ...

    async def aclose(self) -> None: ...


class HttpxUpstream:
    """A service behind an httpx client: the app itself in `nrm up`, or a test's stand-in."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = without_cookies(client)

    async def open(self, request: UpstreamRequest) -> UpstreamAnswer:
        outgoing = self._client.build_request(
            request.method,
            request.target,
            headers=request.headers,
            content=request.body,
        )
        async with _as_problems():
            answer = await self._client.send(outgoing, stream=True)
        return UpstreamAnswer(
            answer.status_code, answer.headers.raw, answer.aiter_raw(), answer.aclose
        )

    async def fetch(self, path: str) -> tuple[int, bytes]:
        async with _as_problems():
            answer = await self._client.get(path)
        return answer.status_code, answer.content

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpUpstream:
    """A service at a base URL, over one keep-alive connection pool."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        self._base = base_url.rstrip("/")
        # No total: a long download is fine while bytes keep coming.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=min(5.0, timeout), sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop it was made in.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                # Bounded: past this many open requests to one service, the next waits for
                # a connection (within the connect timeout) rather than opening more.
                connector=aiohttp.TCPConnector(limit=CONNECTIONS, keepalive_timeout=30),
                # Bytes pass through as the service sent them, compressed or not, and
                # nothing is added that the caller did not send.
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                trust_env=False,  # never an HTTP proxy from the environment
                # Every caller shares this session: no cookie is kept for the next one.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def open(self, request: UpstreamRequest) -> UpstreamAnswer:
        url = URL(self._base + request.target, encoded=True)
        headers = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers
        )
        async with _as_problems():
            answer = await self._client().request(
                request.method, url, headers=headers, data=request.body, allow_redirects=False
            )

        async def close() -> None:
            answer.release()

        return UpstreamAnswer(answer.status, list(answer.raw_headers), _read(answer), close)

    async def fetch(self, path: str) -> tuple[int, bytes]:
        async with (
            _as_problems(),
            self._client().get(
                URL(self._base + path, encoded=True), allow_redirects=False
            ) as answer,
        ):
            return answer.status, await answer.read()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _read(answer: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async with _as_problems():
        async for chunk in answer.content.iter_any():
            yield chunk


@asynccontextmanager
async def _as_problems() -> AsyncIterator[None]:
    """Transport failures as the problems the caller sees: 504 when slow, else 502."""
    try:
        yield
    except (httpx.TimeoutException, TimeoutError):  # aiohttp's timeouts are TimeoutErrors
        raise GatewayTimeout(TOO_SLOW) from None
    except (httpx.TransportError, aiohttp.ClientError, OSError):
        raise BadGateway(UNREACHABLE) from None


class Upstreams:
    """The services the gateway proxies to, by name."""

    def __init__(self, upstreams: Mapping[str, Upstream | httpx.AsyncClient]) -> None:
        self._upstreams: dict[str, Upstream] = {
            name: HttpxUpstream(up) if isinstance(up, httpx.AsyncClient) else up
            for name, up in upstreams.items()
        }

    @classmethod
    def over_http(cls, urls: Mapping[str, str], *, timeout: float) -> Upstreams:
        return cls({name: HttpUpstream(url, timeout=timeout) for name, url in urls.items()})

    def has(self, service: str) -> bool:
        return service in self._upstreams

    def get(self, service: str) -> Upstream:
        upstream = self._upstreams.get(service)
        if upstream is None:
            raise NotFound("No such API.")
        return upstream

    async def aclose(self) -> None:
        for upstream in self._upstreams.values():
            await upstream.aclose()
