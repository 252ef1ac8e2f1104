"""Traces (OpenTelemetry, OTLP/HTTP when NRM_OTLP_ENDPOINT is set) and JSON logs with trace ids.

Spans and log lines carry ids and codes only. SQL statements are traced without their
parameters, and HTTP spans without bodies, so personal data does not reach a collector.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from opentelemetry import metrics, propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, Status
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nrm.errors import qualified
from nrm.settings import Settings
from nrm.unrecorded import UnrecordedTracerProvider


def tracer_provider(service_name: str, settings: Settings) -> TracerProvider:
    resource = Resource.create({"service.name": service_name})
    if not settings.otlp_endpoint:
        return UnrecordedTracerProvider(resource=resource)  # ids for the logs, no recording
    provider = TracerProvider(resource=resource)
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(WithoutMessages(OTLPSpanExporter(endpoint))))
    return provider


# What an exception event carries beyond its type.
EXCEPTION_TEXT = frozenset({"exception.message", "exception.stacktrace"})


class WithoutMessages(SpanExporter):
    """Sends spans on without the text of any exception: no status description and no
    message or stack trace on exception events. Instrumentation we do not write records
    them (SQLAlchemy's puts the database's error in the status, and PostgreSQL's error
    quotes the failing row); the collector is outside what must never see personal data."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([_scrubbed(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def _scrubbed(span: ReadableSpan) -> ReadableSpan:
    events = [
        SpanEvent(
            event.name,
            {k: v for k, v in (event.attributes or {}).items() if k not in EXCEPTION_TEXT},
            event.timestamp,
        )
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def setup_tracing(service_name: str, settings: Settings) -> TracerProvider:
    """One tracer provider per process, made by the composition root (never at import)."""
    provider = tracer_provider(service_name, settings)
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    AioPikaInstrumentor().instrument(tracer_provider=provider)
    return provider


def instrument_app(app: FastAPI, provider: TracerProvider | None, *, prefix: str = "") -> None:
    """Add the request span and log line; call it last, so it wraps every other layer.

    `prefix`: where the app includes its routers (a service's /api/v1/<name>).
    """
    tracer = trace.get_tracer(__name__, tracer_provider=provider)
    app.add_middleware(RequestTelemetryMiddleware, tracer=tracer, prefix=prefix)


class _ScopeHeaders(Getter[Scope]):
    """The caller's trace headers, straight from the scope's raw (lowercase) names."""

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        found = [value.decode("latin-1") for name, value in carrier["headers"] if name == wanted]
        return found or None

    def keys(self, carrier: Scope) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier["headers"]]


HEADERS = _ScopeHeaders()
request_log = logging.getLogger("nrm.request")
SQLALCHEMY_TRACER = "opentelemetry.instrumentation.sqlalchemy"
QUIET_PATHS = ("/healthz", "/readyz")


class RequestTelemetryMiddleware:
    """One server span and one log line per request, the line inside the span (its trace id).

    Written for this platform rather than taken from opentelemetry-instrumentation-fastapi,
    which on every request matched the path against every route again to name its span
    and recorded a dozen attributes: a fifth of what a request through the gateway cost.
    Here the route comes from the routing already done (`scope["route"]`), and both the
    span and the line name the route's template, never the raw path or query: those may
    hold what a caller typed. Probes get a DEBUG line and no span.
    """

    def __init__(self, app: ASGIApp, *, tracer: trace.Tracer, prefix: str = "") -> None:
        self.app = app
        self._tracer = tracer
        self._prefix = prefix

    def _route(self, scope: Scope) -> str:
        """The matched route's full template. FastAPI names an included router's route
        by its path inside that router, so the prefix it was included under is added back."""
        route: str | None = getattr(scope.get("route"), "path", None)
        if route is None:
            return "unmatched"
        prefix = self._prefix
        if prefix and scope["path"].startswith(prefix + "/") and not route.startswith(prefix):
            return prefix + route
        return route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].endswith(QUIET_PATHS):
            await self._logged(scope, receive, send, None)
            return
        method = scope["method"]
        with self._tracer.start_as_current_span(
            method,
            context=propagate.extract(scope, getter=HEADERS),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope["scheme"]},
            # Recorded by hand: an exception's message quotes the values that failed.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self._logged(scope, receive, send, span)
            except Exception as error:
                span.set_status(trace.StatusCode.ERROR)
                span.set_attribute(
                    "error.type", f"{type(error).__module__}.{type(error).__qualname__}"
                )
                raise

    async def _logged(self, scope: Scope, receive: Receive, send: Send, span: Span | None) -> None:
        started = time.perf_counter()
        status = 500  # what the caller gets if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = self._route(scope)
            if span is not None:
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.StatusCode.ERROR)
            request_log.log(
                logging.INFO if span is not None else logging.DEBUG,
                "%s %s %d %.1f ms",
                scope["method"],
                route,
                status,
                (time.perf_counter() - started) * 1000,
            )


def instrument_engine(engine: AsyncEngine, provider: TracerProvider | None) -> None:
    """Trace the engine's statements (never their parameters: they may be personal data).

    The instrumentor is one per process and instruments only the engine of its first
    call (later calls just warn), while `nrm up` opens five: those get a tracer of their
    own, as the instrumentor would have made it. With no collector there is nothing to
    trace for: a statement's span would carry ids no log line ever names.
    """
    if isinstance(provider, UnrecordedTracerProvider):
        return
    instrumentor = SQLAlchemyInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(
            engine=engine.sync_engine, tracer_provider=provider, enable_commenter=False
        )
        return
    tracer = trace.get_tracer(SQLALCHEMY_TRACER, tracer_provider=provider)
    connections = metrics.get_meter(SQLALCHEMY_TRACER).create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    # The library's own class, as its instrumentor uses it; it has no type hints.
    EngineTracer(tracer, engine.sync_engine, connections, enable_commenter=False)  # type: ignore[no-untyped-call]


def shutdown_tracing(provider: TracerProvider) -> None:
    provider.shutdown()
    HTTPXClientInstrumentor().uninstrument()
    AioPikaInstrumentor().uninstrument()


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = without_messages(record.exc_info[1])
        return json.dumps(entry, ensure_ascii=False)


def without_messages(error: BaseException) -> str:
    """A traceback with where and what, but not an exception's message: messages quote
    the values that failed (a validation error its input, a KeyError its key), and here
    those may be a name or a phone number. Chained exceptions come first, as Python's."""
    lines: list[str] = []
    seen: set[int] = set()

    def add(part: traceback.TracebackException) -> None:
        if id(part) in seen:
            return
        seen.add(id(part))
        if part.__cause__ is not None:
            add(part.__cause__)
            lines.append("\nThe above exception was the direct cause of the following:\n\n")
        elif part.__context__ is not None and not part.__suppress_context__:
            add(part.__context__)
            lines.append("\nDuring handling of the above exception, another occurred:\n\n")
        lines.append("Traceback (most recent call last):\n")
        lines.extend(part.stack.format())
        lines.append(f"{qualified(part.exc_type)}\n")

    add(traceback.TracebackException.from_exception(error, capture_locals=False))
    return "".join(lines).rstrip("\n")


def setup_logging(level: str) -> None:
    # What a record would collect and the JSON line never shows: the calling thread,
    # process and process name (the logging HOWTO's "Optimization").
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log repeats what the request span already records.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO, query string included: it may hold
    # what someone typed into a search.
    logging.getLogger("httpx").setLevel(logging.WARNING)
