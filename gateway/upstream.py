"""How the gateway reaches a service: in this process (ASGI) or over HTTP.

`nrm up` hands the gateway httpx clients bound to the service apps themselves; split
mode talks HTTP to NRM_<C>_URL through the proxy's own lean HTTP/1.1 client (http1.py):
httpx's pool rescanned every pooled connection, with a socket poll each, on every
request (at 16 concurrent requests two thirds of the gateway's CPU), and aiohttp after
it still cost a sixth in machinery a proxy does not use.
Both stream bodies both ways and answer failures as 502/504 problems.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import httpx

from gateway.http1 import Answer, Connection, Pool, UploadStalled
from nrm.errors import BadGateway, GatewayTimeout, NotFound, RequestTimeout
from nrm.http import without_cookies

UNREACHABLE = "The service cannot be reached."
CONNECTIONS = 256
# Idempotent methods (RFC 9110 9.2.2): sent twice, they do what once does.
REPEATABLE = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
TOO_SLOW = "The service did not answer in time."
UPLOAD_STALLED = "The request body stopped arriving."


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
    """A service at a base URL, over one keep-alive connection pool (see http1.py)."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = url.host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._tls = ssl.create_default_context() if url.scheme == "https" else None
        self._prefix = url.raw_path.rstrip(b"/")
        self._host_header = url.netloc
        self._read_timeout = timeout
        self._connect_timeout = min(5.0, timeout)
        self._pool: Pool | None = None

    def _pool_now(self) -> Pool:
        # Made on first use: its connections belong to the event loop it was made in.
        if self._pool is None:
            self._pool = Pool(
                self._host,
                self._port,
                tls=self._tls,
                limit=CONNECTIONS,
                connect_timeout=self._connect_timeout,
            )
        return self._pool

    def _head(self, request: UpstreamRequest, *, chunked: bool) -> bytes:
        target = self._prefix + request.target.encode("latin-1")
        lines = [
            b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (request.method.encode(), target, self._host_header)
        ]
        lines += [b"%s: %s\r\n" % header for header in request.headers]
        if chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def open(self, request: UpstreamRequest) -> UpstreamAnswer:
        pool = self._pool_now()
        length = _content_length(request.headers)
        head = self._head(request, chunked=request.body is not None and length is None)
        async with _as_problems():
            connection = await pool.acquire()
            try:
                connection, answer = await self._exchange(pool, connection, head, request, length)
            except BaseException:
                pool.release(connection)  # closed by now: the slot is what is given back
                raise

        async def close() -> None:
            pool.release(connection)

        return UpstreamAnswer(answer.status, answer.headers, _read(answer.body), close)

    async def _exchange(
        self,
        pool: Pool,
        connection: Connection,
        head: bytes,
        request: UpstreamRequest,
        length: int | None,
    ) -> tuple[Connection, Answer]:
        reused = connection.used
        try:
            answer = await connection.exchange(
                request.method, head, request.body, length=length, within=self._read_timeout
            )
        except ConnectionError:
            # A kept-alive connection the service had closed as the request went out: once
            # more on a new one, if the service cannot have acted on it (not a byte of an
            # answer, a method safe to repeat) and none of the caller's body was taken.
            retry = reused and not connection.received_anything and request.body is None
            if not (retry and request.method in REPEATABLE):
                raise
        else:
            return connection, answer
        fresh = await pool.fresh()
        try:
            answer = await fresh.exchange(
                request.method, head, None, length=length, within=self._read_timeout
            )
        except BaseException:
            fresh.close()
            raise
        return fresh, answer

    async def fetch(self, path: str) -> tuple[int, bytes]:
        answer = await self.open(UpstreamRequest("GET", path, [], None))
        try:
            content = b"".join([chunk async for chunk in answer.body])
        finally:
            await answer.close()
        return answer.status, content

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            return int(value)
    return None


async def _read(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The answer's body, its failures as problems (a silent service: 504)."""
    async with _as_problems():
        async for chunk in body:
            yield chunk


@asynccontextmanager
async def _as_problems() -> AsyncIterator[None]:
    """Transport failures as the problems the caller sees: 504 when the service was slow,
    408 when the caller's own upload stalled, else 502."""
    try:
        yield
    except UploadStalled:
        raise RequestTimeout(UPLOAD_STALLED) from None
    except (httpx.TimeoutException, TimeoutError):
        raise GatewayTimeout(TOO_SLOW) from None
    except (httpx.TransportError, OSError):
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
