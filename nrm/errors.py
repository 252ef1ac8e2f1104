"""One exception family for the domain, mapped once to RFC 9457 problem+json.

Messages must never carry personal data: they end up in responses and logs.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://open-nrm.org/problems/"

log = logging.getLogger(__name__)


def qualified(kind: type[BaseException] | None) -> str:
    """An exception's type by its full name: what went wrong, without the values. Its
    message may quote them (a validation error its input, a database error the row)."""
    return f"{kind.__module__}.{kind.__qualname__}" if kind is not None else "Exception"


class ProblemError(Exception):
    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}


class BadRequest(ProblemError):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(ProblemError):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ProblemError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ProblemError):
    status, title, slug = 404, "Not found", "not-found"


class MethodNotAllowed(ProblemError):
    status, title, slug = 405, "Method not allowed", "method-not-allowed"


class RequestTimeout(ProblemError):
    status, title, slug = 408, "Request timeout", "request-timeout"


class Conflict(ProblemError):
    status, title, slug = 409, "Conflict", "conflict"


class Invalid(ProblemError):
    status, title, slug = 422, "Unprocessable content", "invalid"


class TooManyRequests(ProblemError):
    status, title, slug = 429, "Too many requests", "too-many-requests"


class BadGateway(ProblemError):
    status, title, slug = 502, "Bad gateway", "bad-gateway"


class Unavailable(ProblemError):
    status, title, slug = 503, "Service unavailable", "unavailable"


class GatewayTimeout(ProblemError):
    status, title, slug = 504, "Gateway timeout", "gateway-timeout"


_BY_STATUS: dict[int, type[ProblemError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        RequestTimeout,
        Conflict,
        Invalid,
        TooManyRequests,
        BadGateway,
        Unavailable,
        GatewayTimeout,
    )
}


def problem_response(
    status: int,
    title: str,
    slug: str,
    *,
    detail: str | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The offending input is deliberately left out: it may be a name or a phone number.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            exc.status,
            exc.title,
            exc.slug,
            detail=exc.detail,
            instance=request.url.path,
            extra=exc.extra,
            headers=exc.headers,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            422,
            "Unprocessable content",
            "validation",
            detail="The request does not match the schema.",
            instance=request.url.path,
            extra={"errors": _validation_errors(exc)},
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        known = _BY_STATUS.get(exc.status_code)
        return problem_response(
            exc.status_code,
            known.title if known else "Error",
            known.slug if known else "http-error",
            detail=exc.detail if isinstance(exc.detail, str) else None,
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Not the path (it may hold what a caller typed): the request's own log line, with
        # the same trace id, names the route.
        log.exception("unhandled error on a %s request", request.method)
        return problem_response(500, "Internal error", "internal", instance=request.url.path)

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
