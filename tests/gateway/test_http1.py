"""The proxy's HTTP/1.1 client against a real uvicorn server: reuse, framing, failures."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.proxy import CallerLeft, caller_body
from gateway.upstream import HttpUpstream, UpstreamAnswer, UpstreamRequest
from nrm.errors import BadGateway, RequestTimeout
from tests.e2e.processes import free_port
from tests.support import eventually


def _service() -> FastAPI:
    app = FastAPI()

    @app.get("/who")
    async def who(request: Request) -> dict[str, int]:
        # The caller's port names the connection the request came on.
        assert request.client is not None
        return {"port": request.client.port}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/refuse")
    async def refuse() -> JSONResponse:
        return JSONResponse({"refused": True}, status_code=413)  # without reading the body

    return app


@contextlib.asynccontextmanager
async def _uvicorn(app: ASGIApp) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        app, port=port, log_level="warning", lifespan="off", timeout_keep_alive=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server))
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
async def service() -> AsyncIterator[str]:
    async with _uvicorn(_service()) as url:
        yield url


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers each part of the upload as it arrives: both directions at once."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await send(
            {"type": "http.response.body", "body": message.get("body", b""), "more_body": True}
        )
        more = message.get("more_body", False)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _started(server: uvicorn.Server) -> bool | None:
    return True if server.started else None


async def _read(answer: UpstreamAnswer) -> bytes:
    try:
        return b"".join([chunk async for chunk in answer.body])
    finally:
        await answer.close()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _port(upstream: HttpUpstream) -> bytes:
    return await _read(await upstream.open(UpstreamRequest("GET", "/who", [], None)))


async def test_one_connection_serves_request_after_request(service: str) -> None:
    upstream = HttpUpstream(service, timeout=5.0)
    first, second, third = [await _port(upstream) for _ in range(3)]
    assert first == second == third
    await upstream.aclose()


async def test_a_connection_the_service_closed_while_idle_is_replaced(service: str) -> None:
    upstream = HttpUpstream(service, timeout=5.0)
    first = await _port(upstream)
    await asyncio.sleep(1.5)  # past the service's keep-alive timeout: it hangs up
    assert await _port(upstream) != first  # a new connection, and no error for the caller
    await upstream.aclose()


async def test_a_body_of_unknown_length_goes_chunked(service: str) -> None:
    upstream = HttpUpstream(service, timeout=5.0)
    request = UpstreamRequest("POST", "/upload", [], _chunks(b"a" * 1000, b"b" * 24))
    assert await _read(await upstream.open(request)) == b'{"received":1024}'
    await upstream.aclose()


async def test_an_upload_cut_short_is_a_502_not_a_hang(service: str) -> None:
    upstream = HttpUpstream(service, timeout=30.0)
    headers = [(b"content-length", b"100")]
    request = UpstreamRequest("POST", "/upload", headers, _chunks(b"only ten b"))
    with pytest.raises(BadGateway):
        await asyncio.wait_for(_read(await upstream.open(request)), timeout=10.0)
    assert await _port(upstream), "the service still serves the next request"
    await upstream.aclose()


async def test_an_answer_before_the_upload_ends_is_passed_on_and_the_connection_dropped(
    service: str,
) -> None:
    upstream = HttpUpstream(service, timeout=5.0)
    before = await _port(upstream)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0.01)

    answer = await upstream.open(UpstreamRequest("POST", "/refuse", [], endless()))
    assert answer.status == 413
    assert await _read(answer) == b'{"refused":true}'
    assert await _port(upstream) != before, "its framing was lost: not reused"
    await upstream.aclose()


async def test_a_service_that_does_not_speak_http_is_a_502() -> None:
    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(babble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream = HttpUpstream(f"http://127.0.0.1:{port}", timeout=5.0)
    with pytest.raises(BadGateway):
        await upstream.open(UpstreamRequest("GET", "/", [], None))
    await upstream.aclose()
    server.close()
    await server.wait_closed()


class RawService:
    """An asyncio server answering each request with `answer(request_line)`, noting every
    request line it reads (and whether a chunked body reached its end)."""

    def __init__(self, answer: bytes, *, close: bool = False) -> None:
        self.answer, self.close = answer, close
        self.seen: list[str] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.seen.append(head.split(b"\r\n")[0].decode())
                if b"transfer-encoding: chunked" in head.lower():
                    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                        await reader.readexactly(size + 2)
                    await reader.readuntil(b"\r\n")
                    self.seen.append("body complete")
                writer.write(self.answer)
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def test_an_answer_to_head_ends_with_its_headers() -> None:
    # It announces a length it does not send: waiting for those bytes would hang.
    async with RawService(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n") as url:
        upstream = HttpUpstream(url, timeout=30.0)
        answer = await asyncio.wait_for(
            upstream.open(UpstreamRequest("HEAD", "/", [], None)), timeout=10.0
        )
        assert answer.status == 200
        assert await asyncio.wait_for(_read(answer), timeout=10.0) == b""
        await upstream.aclose()


async def test_an_answer_that_ends_with_the_connection_is_whole() -> None:
    async with RawService(b"HTTP/1.0 200 OK\r\n\r\nthe whole body", close=True) as url:
        upstream = HttpUpstream(url, timeout=5.0)
        assert await _read(await upstream.open(UpstreamRequest("GET", "/", [], None))) == (
            b"the whole body"
        )
        await upstream.aclose()


async def test_a_post_the_service_may_have_acted_on_is_not_sent_again() -> None:
    service = RawService(OK)
    async with service as url:
        upstream = HttpUpstream(url, timeout=5.0)
        assert await _read(await upstream.open(UpstreamRequest("GET", "/warm", [], None)))
        service.close = True  # the next request is served, then the connection drops...
        service.answer = b""  # ...without an answer, as when a worker dies mid-way
        with pytest.raises(BadGateway):
            await upstream.open(UpstreamRequest("POST", "/pay", [], None))
        await upstream.aclose()
    assert service.seen == ["GET /warm HTTP/1.1", "POST /pay HTTP/1.1"]


async def test_after_an_early_answer_the_rest_of_the_upload_goes_nowhere() -> None:
    """The service answered before reading the body: what the caller sends on must not
    reach it as requests of their own (request smuggling)."""
    refuse = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n"
    service = RawService(refuse)
    smuggled = b"GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n" * 50

    async def upload() -> AsyncIterator[bytes]:
        yield b"x"
        await asyncio.sleep(0.2)  # the answer arrives meanwhile
        yield smuggled

    async with service as url:
        upstream = HttpUpstream(url, timeout=5.0)
        headers = [(b"content-length", str(1 + len(smuggled)).encode())]
        answer = await upstream.open(UpstreamRequest("POST", "/refuse", headers, upload()))
        assert answer.status == 413
        await _read(answer)
        service.answer = OK
        assert await _read(await upstream.open(UpstreamRequest("GET", "/next", [], None)))
        await upstream.aclose()
    assert not [line for line in service.seen if "smuggled" in line]
    assert service.connections == 2, "the next request did not share the broken connection"


async def test_a_chunked_upload_the_caller_abandons_never_ends_at_the_service() -> None:
    service = RawService(OK)

    async def abandoned() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        raise ConnectionError("the caller left")

    async with service as url:
        upstream = HttpUpstream(url, timeout=5.0)
        with pytest.raises(BadGateway):
            await upstream.open(UpstreamRequest("POST", "/upload", [], abandoned()))
        await upstream.aclose()
    assert "body complete" not in service.seen


async def test_an_upload_slower_than_the_timeout_is_not_cut_off(service: str) -> None:
    upstream = HttpUpstream(service, timeout=0.5)

    async def slow() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"z" * 100
            await asyncio.sleep(0.3)  # 1.2 s in all, the service silent while it reads

    answer = await upstream.open(UpstreamRequest("POST", "/upload", [], slow()))
    assert await _read(answer) == b'{"received":400}'
    await upstream.aclose()


async def test_a_caller_leaving_mid_upload_is_an_error_not_the_end_of_the_body() -> None:
    messages: Iterator[Message] = iter(
        [
            {"type": "http.request", "body": b"part", "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> Message:
        return next(messages)

    with pytest.raises(CallerLeft):
        _ = [chunk async for chunk in caller_body(receive)]


async def test_a_connection_that_brings_more_than_the_answer_is_not_reused() -> None:
    # Two answers for one request: the second must not become the next caller's answer.
    service = RawService(OK + b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale")
    async with service as url:
        upstream = HttpUpstream(url, timeout=5.0)
        assert await _read(await upstream.open(UpstreamRequest("GET", "/a", [], None))) == b"ok"
        await asyncio.sleep(0.2)  # the surplus arrives while the connection is idle
        second = await _read(await upstream.open(UpstreamRequest("GET", "/b", [], None)))
        await upstream.aclose()
    assert second == b"ok"
    assert service.connections == 2


async def test_an_upload_that_stalls_is_a_408_and_frees_its_place(service: str) -> None:
    upstream = HttpUpstream(service, timeout=0.5)

    async def stalled() -> AsyncIterator[bytes]:
        yield b"ten bytes!"
        await asyncio.Event().wait()  # and then nothing, for ever
        yield b""

    request = UpstreamRequest("POST", "/upload", [(b"content-length", b"100")], stalled())
    with pytest.raises(RequestTimeout):
        await asyncio.wait_for(upstream.open(request), timeout=10.0)
    assert await _port(upstream), "the next request is served"
    await upstream.aclose()


async def test_a_service_answering_while_it_reads_gets_the_whole_upload() -> None:

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"first,", b"second,", b"third"):
            yield part
            await asyncio.sleep(0.1)  # the answer has started by the next part

    async with _uvicorn(_echo) as url:
        upstream = HttpUpstream(url, timeout=5.0)
        request = UpstreamRequest("POST", "/echo", [(b"content-length", b"18")], parts())
        assert await _read(await upstream.open(request)) == b"first,second,third"
        await upstream.aclose()


async def test_an_endless_answer_head_is_refused() -> None:
    flood = b"HTTP/1.1 200 OK\r\nx-pad: " + b"a" * 200_000 + b"\r\ncontent-length: 2\r\n\r\nok"
    async with RawService(flood) as url:
        upstream = HttpUpstream(url, timeout=5.0)
        with pytest.raises(BadGateway):
            await upstream.open(UpstreamRequest("GET", "/", [], None))
        await upstream.aclose()


async def test_an_unframed_answer_cut_by_a_reset_is_not_passed_on_as_whole() -> None:
    async def crash(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nthe first half")
        await writer.drain()
        linger = struct.pack("ii", 1, 0)  # close with a reset: the service crashed
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        writer.transport.abort()

    server = await asyncio.start_server(crash, "127.0.0.1", 0)
    upstream = HttpUpstream(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=5.0)
    answer = await upstream.open(UpstreamRequest("GET", "/", [], None))
    with pytest.raises(BadGateway):
        await _read(answer)
    await upstream.aclose()
    server.close()
    await server.wait_closed()
