"""The proxy's HTTP/1.1 client against a real uvicorn server: reuse, framing, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.upstream import HttpUpstream, UpstreamAnswer, UpstreamRequest
from nrm.errors import BadGateway
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


@pytest.fixture
async def service() -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        _service(), port=port, log_level="warning", lifespan="off", timeout_keep_alive=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server))
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


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
