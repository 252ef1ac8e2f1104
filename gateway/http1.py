"""A lean HTTP/1.1 client for the proxy: one keep-alive pool per service, bytes streamed.

Nearly every request to the gateway is one request to a service, so the client's own
cost is paid per request. aiohttp cost the gateway a sixth of its CPU in building
requests, URLs, header multidicts, cookie and redirect handling that a proxy does not
want. This speaks just what the proxy needs, on asyncio's transports with uvicorn's
parser (httptools): a request line and the caller's headers, a body streamed with the
caller's framing (or chunked), and an answer read as it arrives.

Failures are OSErrors (ConnectionError, or `BrokenAnswer` for an answer that is not
HTTP) and TimeoutErrors, which the proxy turns into 502 and 504.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import httptools

# Idle connections are dropped before the service would drop them (uvicorn: 5 s), so a
# request rarely meets a connection the service is closing.
IDLE_SECONDS = 4.0
# Past this much of an answer unread, reading from the service pauses until the caller
# has taken some: a slow caller does not make the gateway hold a whole download.
HIGH_WATER = 256 * 1024


class BrokenAnswer(ConnectionError):
    """The service's bytes are not an HTTP/1.1 answer the proxy can pass on."""


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: AsyncIterator[bytes]


class Connection(asyncio.Protocol):
    """One connection to a service, one exchange at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[Answer] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._arrived = asyncio.Event()  # a chunk, the end, or a failure
        self._complete = False
        self._keep_alive = False
        self._paused = False
        self._failure: Exception | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.idle_since = 0.0
        self.used = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BrokenAnswer("the service switched protocols"))
        except httptools.HttpParserError:
            self._fail(BrokenAnswer("the service's answer is not HTTP/1.1"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._complete:
            self._fail(ConnectionError("the service closed the connection"))
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            return  # an interim answer (100 Continue): its message completes below
        # Asked here: once the message is complete the parser no longer knows.
        self._keep_alive = self._parser.should_keep_alive()
        if self._head is not None and not self._head.done():
            self._head.set_result(Answer(status, self._headers, self._read()))

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._arrived.set()

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            self._headers = []
            return
        self._complete = True
        self._arrived.set()

    # the exchange
    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def reusable(self) -> bool:
        """The answer was read to its end and both sides keep the connection."""
        return self._complete and self._keep_alive and self.open

    async def exchange(
        self,
        head: bytes,
        body: AsyncIterator[bytes] | None,
        *,
        length: int | None,
        within: float,
    ) -> Answer:
        """Send a request (its body with `length` bytes, or chunked when None) and wait,
        at most `within` seconds, for the answer's head; the body is read as it comes."""
        assert self._transport is not None
        self.used = True
        self._reset()
        self._head = asyncio.get_running_loop().create_future()
        self._transport.write(head)
        sending = asyncio.create_task(self._send(body, length)) if body is not None else None
        try:
            async with asyncio.timeout(within):
                return await self._head
        except BaseException:
            if sending is not None:
                sending.cancel()
            raise

    async def _send(self, body: AsyncIterator[bytes], length: int | None) -> None:
        assert self._transport is not None
        sent = 0
        try:
            async for chunk in body:
                if self._failure is not None or self._complete:
                    break  # the service answered already, or went away
                sent += len(chunk)
                self._transport.write(chunk if length is not None else _chunk(chunk))
                await self._writable.wait()
            else:
                if length is None:
                    self._transport.write(b"0\r\n\r\n")
                    return
                if sent == length:
                    return
        except Exception:  # noqa: S110 - the caller's upload failed: closed below
            pass
        # Stopped short of what was announced: the service must not wait for the rest, and
        # the connection's framing is lost.
        self.close()

    async def _read(self) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= HIGH_WATER and self._transport is not None:
                    self._paused = False
                    self._transport.resume_reading()
                yield chunk
            if self._complete:
                return
            if self._failure is not None:
                raise self._failure
            self._arrived.clear()
            await self._arrived.wait()

    def _fail(self, failure: Exception) -> None:
        if self._failure is None:
            self._failure = failure
        if self._head is not None and not self._head.done():
            self._head.set_exception(failure)
        self._arrived.set()
        self.close()

    def _reset(self) -> None:
        self._headers, self._complete, self._keep_alive, self._failure = [], False, False, None
        self._chunks.clear()
        self._buffered = 0

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class Pool:
    """Keep-alive connections to one host, at most `limit` open at once."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        limit: int,
        connect_timeout: float,
    ) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._idle: deque[Connection] = deque()
        self._slots = asyncio.Semaphore(limit)
        self._connect_timeout = connect_timeout

    async def acquire(self) -> Connection:
        """A connection that is open, idle or new; waits (within the connect timeout)
        while `limit` are busy."""
        async with asyncio.timeout(self._connect_timeout):
            await self._slots.acquire()
        try:
            return self._idle_connection() or await self._connect()
        except BaseException:
            self._slots.release()
            raise

    def release(self, connection: Connection) -> None:
        if connection.reusable:
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.append(connection)
        else:
            connection.close()
        self._slots.release()

    async def fresh(self) -> Connection:
        """A new connection in place of one found closed: the caller keeps its slot."""
        return await self._connect()

    def _idle_connection(self) -> Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: least likely stale
            if connection.open and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _, connection = await loop.create_connection(
                Connection, self._host, self._port, ssl=self._tls
            )
        return connection

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
