"""Liveness and readiness, the same in every component."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from nrm.errors import problem_response


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="The database and the bus are reachable")
    async def readyz(request: Request) -> JSONResponse:
        checks = {"database": await request.app.state.db.ping()}
        bus = getattr(request.app.state, "bus", None)
        if bus is not None:
            checks["bus"] = await bus.is_ready()
        report = {name: "ok" if ok else "unreachable" for name, ok in checks.items()}
        if all(checks.values()):
            return JSONResponse({"status": "ready", "checks": report})
        return problem_response(
            503, "Service unavailable", "not-ready", detail="Not ready.", extra={"checks": report}
        )

    return router
