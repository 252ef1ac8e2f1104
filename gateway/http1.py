"""A lean HTTP/1.1 client for the proxy: one keep-alive pool per service, bytes streamed.

Nearly every request to the gateway is one request to a service, so the client's own
cost is paid per request. aiohttp cost the gateway a sixth of its CPU in building
requests, URLs, header multidicts, cookie and redirect handling that a proxy does not
want. This speaks just what the proxy needs, on asyncio's transports with uvicorn's
parser (httptools): a request line and the caller's headers, a body streamed with the
caller's framing (or chunked), and an answer read as it arrives.

A connection goes back to the pool only after a clean exchange: the request sent whole,
the answer read to its end, both sides keeping the connection. Anything else (an answer
before the upload ended, a caller gone mid-way, a failure) closes it, since what the
service reads next on it would no longer be where a request starts.

Failures are OSErrors (ConnectionError, or `BrokenAnswer` for an answer that is not
HTTP) and TimeoutErrors (the service silent, or not reading, for the exchange's
`within`), which the proxy turns into 502 and 504.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import httptools

# Idle connections are dropped before the service would drop them (uvicorn: 5 s after
# its answer), so a request rarely meets a connection the service is closing.
IDLE_SECONDS = 4.0
# Past this much of an answer unread, reading from the service pauses until the caller
# has taken some: a slow caller does not make the gateway hold a whole download.
HIGH_WATER = 256 * 1024
# An answer's head (and a chunked answer's trailers) past this is refused: the parser
# keeps what it is given, and a broken service could fill the gateway's memory.
MAX_HEAD = 64 * 1024


class BrokenAnswer(ConnectionError):
    """The service's bytes are not an HTTP/1.1 answer the proxy can pass on."""


class UploadStalled(TimeoutError):
    """The caller's request body stopped arriving for as long as a service may be silent."""


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
        self._complete = False  # the answer's last byte has arrived
        self._sent = False  # the request's last byte has gone out
        self._keep_alive = False
        self._framed = False  # the answer says where it ends (Content-Length, chunked)
        self._bodiless = False  # an answer to HEAD: headers only, whatever they announce
        self._received = False  # any byte of this exchange's answer
        self._head_bytes = 0  # of the answer's head and trailers, against MAX_HEAD
        self._ended = asyncio.Event()  # the answer complete, or the exchange failed
        self._paused = False
        self._failure: Exception | None = None
        self._sending: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._silence = 0.0  # the longest wait on the service, set by each exchange
        self.idle_since = 0.0
        self.used = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._complete:
            # More than the answer, or something while idle: where the next answer would
            # start is no longer known, so the connection is done.
            self._fail(BrokenAnswer("the service sent more than its answer"))
            return
        self._received = True
        head_pending = self._head is not None and not self._head.done()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BrokenAnswer("the service switched protocols"))
        except httptools.HttpParserError:
            self._fail(BrokenAnswer("the service's answer is not HTTP/1.1"))
        if head_pending:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD and self._head is not None and not self._head.done():
                self._fail(BrokenAnswer("the service's answer head is too large"))

    def connection_lost(self, exc: Exception | None) -> None:
        head_seen = self._head is not None and self._head.done()
        unframed = head_seen and not self._framed and not self._failure
        if not self._complete and unframed and exc is None:
            self._finish()  # an answer that ends where the connection does (HTTP/1.0 style)
        elif not self._complete:
            self._fail(ConnectionError("the service closed the connection"))
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._complete:  # a second answer to one request, in the same bytes
            self._fail(BrokenAnswer("the service sent more than its answer"))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head is not None and self._head.done():  # a chunked answer's trailers
            self._head_bytes += len(name) + len(value)
            if self._head_bytes > MAX_HEAD:
                self._fail(BrokenAnswer("the service's answer trailers are too large"))
            return  # not passed on, as before: the proxy streams bodies, not trailers
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            return  # an interim answer (100 Continue): its message completes below
        # Asked here: once the message is complete the parser no longer knows.
        self._keep_alive = self._parser.should_keep_alive()
        self._framed = status in (204, 304) or any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self._headers
        )
        if self._head is not None and not self._head.done():
            self._head.set_result(Answer(status, self._headers, self._read()))
        if self._bodiless:
            # The parser cannot be told an answer to HEAD has no body; it would wait for
            # the announced one. The answer ends here, and the connection with it.
            self._keep_alive = False
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
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
        self._finish()

    # the exchange
    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def reusable(self) -> bool:
        """A clean exchange: request sent whole, answer read whole, kept alive."""
        clean = self._sent and self._complete and not self._chunks and self._failure is None
        return clean and self._keep_alive and self.open

    async def exchange(
        self,
        method: str,
        head: bytes,
        body: AsyncIterator[bytes] | None,
        *,
        length: int | None,
        within: float,
    ) -> Answer:
        """Send a request (its body with `length` bytes, or chunked when None) and wait
        for the answer's head: the service may be silent for `within` seconds once the
        request is sent, or stop reading it for as long. The body is read as it comes."""
        assert self._transport is not None
        self.used = True
        self._reset(bodiless=method == "HEAD", silence=within)
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self._transport.write(head)
        if body is None:
            self._sent = True
            self._arm()
        else:
            self._sending = asyncio.create_task(self._send(body, length))
        try:
            return await self._head
        except BaseException:
            self.close()
            raise
        finally:
            self._disarm()

    async def _send(self, body: AsyncIterator[bytes], length: int | None) -> None:
        assert self._transport is not None
        exchange, sent = self._head, 0
        chunks = aiter(body)
        try:
            while True:
                try:
                    # The caller may pause as long as a service may be silent, no longer:
                    # a stalled upload would otherwise hold a pool slot for good.
                    async with asyncio.timeout(self._silence):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                if self._head is not exchange or self._ended.is_set():
                    return  # the answer is over (or failed): the rest is not wanted
                if length is not None and sent + len(chunk) > length:
                    break  # longer than announced: closed below
                sent += len(chunk)
                self._transport.write(chunk if length is not None else _chunk(chunk))
                if not self._writable.is_set() and not await self._until_writable():
                    return
        except TimeoutError:
            self._fail(UploadStalled("the caller's request body stopped arriving"))
            return
        except Exception:  # noqa: S110 - the caller's upload failed, or the caller left
            pass
        else:
            if length is None or sent == length:
                if length is None:
                    self._transport.write(b"0\r\n\r\n")
                self._sent = True
                if self._head is not None and not self._head.done():
                    self._arm()  # the wait for the answer starts now
                return
        # Stopped short of the request's end: the service must not take a part for the
        # whole, nor read what comes next on this connection as the rest of it.
        self.close()

    async def _until_writable(self) -> bool:
        """Wait while the service does not read on; False if the answer ended meanwhile,
        or the service neither read nor finished for as long as it may be silent (then
        the exchange fails)."""
        reading = asyncio.ensure_future(self._writable.wait())
        ended = asyncio.ensure_future(self._ended.wait())
        done, _ = await asyncio.wait(
            {reading, ended}, timeout=self._silence, return_when=asyncio.FIRST_COMPLETED
        )
        reading.cancel()
        ended.cancel()
        if not done:
            self._time_out()
        return reading in done

    async def _read(self) -> AsyncIterator[bytes]:
        exchange = self._head
        while True:
            if self._head is not exchange:
                raise ConnectionError("this answer's connection has moved on")
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
            self._arm()
            try:
                await self._arrived.wait()
            finally:
                self._disarm()

    # A bare timer rather than asyncio.timeout: it is armed on every request, and this
    # costs a fraction. A service that stays silent fails the exchange, which closes it.
    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._silence, self._time_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _time_out(self) -> None:
        if not self._complete:
            self._fail(TimeoutError("the service was silent for too long"))

    def _finish(self) -> None:
        self._complete = True
        self._ended.set()
        # The service's keep-alive clock starts as it finishes its answer; ours too.
        self.idle_since = asyncio.get_running_loop().time()
        self._arrived.set()

    def _fail(self, failure: Exception) -> None:
        if self._failure is None:
            self._failure = failure
        if self._head is not None and not self._head.done():
            self._head.set_exception(failure)
        self._arrived.set()
        self._ended.set()
        self.close()

    def _reset(self, *, bodiless: bool, silence: float) -> None:
        self._headers, self._chunks, self._buffered = [], deque(), 0
        self._complete = self._sent = self._keep_alive = self._framed = False
        self._received, self._failure, self._sending = False, None, None
        self._bodiless, self._silence = bodiless, silence
        self._head_bytes, self._ended = 0, asyncio.Event()

    @property
    def received_anything(self) -> bool:
        return self._received

    def close(self) -> None:
        if self._sending is not None and not self._sending.done():
            self._sending.cancel()
        if self._transport is not None:
            self._transport.close()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class Pool:
    """Keep-alive connections to one host, at most `limit` exchanges at once."""

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
        if self._slots.locked():
            async with asyncio.timeout(self._connect_timeout):
                await self._slots.acquire()
        else:
            await self._slots.acquire()  # free: taken at once, no timer to arm
        try:
            return self._idle_connection() or await self._connect()
        except BaseException:
            self._slots.release()
            raise

    def release(self, connection: Connection) -> None:
        if connection.reusable:
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
