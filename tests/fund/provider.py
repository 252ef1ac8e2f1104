"""A real HTTP server standing in for a bank / mobile-money payout provider.

It honours Idempotency-Key like a real provider (a repeated key pays nothing more) and
counts every call per key, so a test can prove what reached the provider.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class ProviderBook:
    posts: Counter[str] = field(default_factory=Counter)
    status_queries: Counter[str] = field(default_factory=Counter)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Account → the provider's failure code for it.
    failing_accounts: dict[str, str] = field(default_factory=dict)
    # Pay at once, answer this much later: the caller's timeout fires after the money moved.
    answer_delay: float = 0.0

    def paid(self, key: str) -> int:
        return 1 if self.payments.get(key, {}).get("status") == "paid" else 0


def provider_app(book: ProviderBook) -> FastAPI:
    app = FastAPI()

    @app.post("/payouts")
    async def pay(request: Request) -> JSONResponse:
        key = request.headers["Idempotency-Key"]
        body = await request.json()
        book.posts[key] += 1
        if key not in book.payments:
            code = book.failing_accounts.get(body.get("account") or "")
            book.payments[key] = (
                {"status": "failed", "code": code}
                if code
                else {"status": "paid", "reference": f"PRV-{len(book.payments) + 1}"}
            )
        if book.answer_delay:
            await asyncio.sleep(book.answer_delay)
        result = book.payments[key]
        return JSONResponse(result, status_code=422 if result["status"] == "failed" else 200)

    @app.get("/payouts/{key}")
    async def status(key: str) -> JSONResponse:
        book.status_queries[key] += 1
        if key not in book.payments:
            return JSONResponse({"status": "unknown"}, status_code=404)
        return JSONResponse(book.payments[key])

    return app


@asynccontextmanager
async def provider_server(book: ProviderBook) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(provider_app(book), log_level="warning", lifespan="off", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
