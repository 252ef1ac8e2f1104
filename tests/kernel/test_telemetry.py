"""Traces follow a request across the bus; logs are JSON with trace ids; OTLP export works."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.keys import SigningKeys
from nrm.app import Runtime, base_app
from nrm.runner import connected_bus, migrate
from nrm.settings import Settings
from nrm.telemetry import JsonLogFormatter, WithoutMessages, instrument_app, tracer_provider
from services.intake.app import create_app as create_intake
from services.notify.app import create_app as create_notify
from tests.support import LocalHttpServer, QuietHandler, bearer, eventually, serving, verifier_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_trace_context_travels_from_the_request_through_the_bus_to_the_consumer(
    settings: Settings, signing_keys: SigningKeys, span_exporter: InMemorySpanExporter
) -> None:
    await migrate(settings, ["intake", "notify"])
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    headers = {
        **bearer(signing_keys, settings),
        "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
    }
    async with connected_bus(settings, "test-trace") as bus:
        runtime = Runtime(settings, bus, verifier_for(signing_keys, settings), provider)
        async with (
            serving(create_intake(runtime)) as intake,
            serving(create_notify(runtime)) as notify,
        ):
            sent = await intake.post("/api/v1/intake/diagnostics/pings", headers=headers)
            ping_id = sent.json()["ping_id"]

            async def arrived() -> bool | None:
                url = f"/api/v1/notify/diagnostics/pings/{ping_id}"
                answer = await notify.get(url, headers=bearer(signing_keys, settings))
                return True if answer.status_code == 200 else None

            await eventually(arrived)

    consumed = [
        span
        for span in span_exporter.get_finished_spans()
        if span.name == "notify consume nrm.intake.diagnostic.pinged.v1"
    ]
    assert consumed, "the consumer recorded no span"
    context = consumed[-1].context
    assert context is not None
    assert format(context.trace_id, "032x") == TRACE_ID


async def test_a_request_is_one_server_span_named_by_its_route_and_one_log_line(
    settings: Settings,
    signing_keys: SigningKeys,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await migrate(settings, ["notify"])
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    span_exporter.clear()
    caplog.set_level(logging.INFO, logger="nrm.request")
    async with connected_bus(settings, "test-spans") as bus:
        runtime = Runtime(settings, bus, verifier_for(signing_keys, settings), provider)
        async with serving(create_notify(runtime)) as notify:
            # A made-up ping id: its value must appear in neither the span nor the line.
            url = "/api/v1/notify/diagnostics/pings/5f0c6a52-0000-4000-8000-00000000beef"
            answer = await notify.get(
                url,
                headers={
                    **bearer(signing_keys, settings),
                    "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
                },
            )
            await notify.get("/api/v1/notify/readyz")
    assert answer.status_code == 404

    servers = [
        span for span in span_exporter.get_finished_spans() if span.kind == trace.SpanKind.SERVER
    ]
    assert len(servers) == 1, "one server span per request (FastAPI's own stays off); probes none"
    (span,) = servers
    route = "/api/v1/notify/diagnostics/pings/{ping_id}"
    assert span.name == f"GET {route}"
    assert span.attributes is not None
    assert span.attributes["http.route"] == route
    assert span.attributes["http.response.status_code"] == 404
    assert format(span.context.trace_id, "032x") == TRACE_ID, "the caller's trace continues"
    assert "beef" not in repr(dict(span.attributes))
    lines = [r.getMessage() for r in caplog.records if r.name == "nrm.request"]
    assert lines == [f"GET {route} 404"] or (
        len(lines) == 1 and lines[0].startswith(f"GET {route} 404 ")
    )


async def test_every_components_database_is_traced_in_one_process(
    settings: Settings, signing_keys: SigningKeys, span_exporter: InMemorySpanExporter
) -> None:
    # `nrm up` opens five engines in one process; each one's statements must show.
    await migrate(settings, ["intake", "notify"])
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    admin = bearer(signing_keys, settings)
    async with connected_bus(settings, "test-sql-spans") as bus:
        runtime = Runtime(settings, bus, verifier_for(signing_keys, settings), provider)
        async with (
            serving(create_intake(runtime)) as intake,
            serving(create_notify(runtime)) as notify,
        ):
            span_exporter.clear()
            await intake.get("/api/v1/intake/cases", headers=admin)
            await notify.get("/api/v1/notify/notifications", headers=admin)

    # Statements, not just connections: a span per SELECT, named by the database it ran in.
    statements = {
        str(span.attributes.get("db.name", ""))
        for span in span_exporter.get_finished_spans()
        if span.kind == trace.SpanKind.CLIENT and span.name != "connect" and span.attributes
    }
    assert any(name.endswith("intake.db") for name in statements), statements
    assert any(name.endswith("notify.db") for name in statements), statements


def test_log_lines_are_json_with_the_current_trace_id(
    span_exporter: InMemorySpanExporter,
) -> None:
    record = logging.LogRecord(
        "nrm.test", logging.INFO, __file__, 1, "case %s routed", ("c-1",), None
    )
    with trace.get_tracer("test").start_as_current_span("work") as span:
        line = json.loads(JsonLogFormatter().format(record))
    assert line["message"] == "case c-1 routed"
    assert line["level"] == "INFO"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


def test_a_logged_exception_shows_where_and_what_but_never_its_message() -> None:
    secret = "Farhod Rahimov +992900111222"
    known: dict[str, str] = {}
    try:
        try:
            known[secret]
        except KeyError as missing:
            raise ValueError(secret) from missing
    except ValueError:
        failed = sys.exc_info()
    record = logging.LogRecord("nrm.test", logging.ERROR, __file__, 1, "failed", (), failed)

    line = json.loads(JsonLogFormatter().format(record))

    assert secret not in json.dumps(line)
    assert "builtins.KeyError" in line["exception"]
    assert "builtins.ValueError" in line["exception"]
    assert "test_telemetry.py" in line["exception"], "where it happened is kept"


async def test_a_failing_request_span_names_the_error_type_not_its_message(
    span_exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Farhod Rahimov +992900111222"
    app = base_app("failing", lifespan=None)

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError(secret)

    instrument_app(app, trace.get_tracer_provider())  # type: ignore[arg-type]
    span_exporter.clear()
    async with serving(app) as client:
        answer = await client.get("/boom")

    assert answer.status_code == 500
    (span,) = [s for s in span_exporter.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert span.attributes is not None
    assert span.attributes["error.type"] == "builtins.ValueError"
    assert span.status.status_code == trace.StatusCode.ERROR
    assert secret not in repr([(e.name, dict(e.attributes or {})) for e in span.events])
    logged = [JsonLogFormatter().format(r) for r in caplog.records]
    assert logged, "the failure is logged"
    assert all(secret not in line for line in logged)


def test_spans_leave_for_the_collector_without_any_exception_text() -> None:
    # What third-party instrumentation records: the error's text in the status and the
    # exception event (a database error quotes the failing row).
    secret = "Farhod Rahimov +992900111222"
    kept = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(WithoutMessages(kept)))
    with provider.get_tracer("test").start_as_current_span("INSERT") as span:
        span.record_exception(ValueError(secret))
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"violates: ({secret})"))

    (sent,) = kept.get_finished_spans()
    assert secret not in repr([(e.name, dict(e.attributes or {})) for e in sent.events])
    assert sent.status.status_code == trace.StatusCode.ERROR
    assert not sent.status.description
    assert sent.events[0].attributes is not None
    assert sent.events[0].attributes["exception.type"] == "ValueError", "the type stays"


class _Collector(QuietHandler):
    received: list[tuple[str, str, int]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        self.received.append((self.path, self.headers.get("content-type", ""), length))
        self.answer(200, "application/x-protobuf", b"")


@pytest.fixture
def collector() -> Iterator[str]:
    """A real HTTP server standing in for the OpenTelemetry collector."""
    with LocalHttpServer(_Collector) as server:
        yield server.base_url


def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_set(collector: str) -> None:
    _Collector.received.clear()
    provider = tracer_provider("nrm-test", Settings(otlp_endpoint=collector))
    with provider.get_tracer("test").start_as_current_span("referral routed"):
        pass
    assert provider.force_flush(timeout_millis=10_000)
    provider.shutdown()

    assert _Collector.received
    path, content_type, length = _Collector.received[0]
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    assert length > 0


def test_no_export_without_an_endpoint() -> None:
    provider = tracer_provider("nrm-test", Settings())
    assert not provider._active_span_processor._span_processors


def test_without_an_endpoint_spans_carry_ids_and_record_nothing() -> None:
    tracer = tracer_provider("nrm-test", Settings()).get_tracer("test")
    with tracer.start_as_current_span("root") as root:
        assert not root.is_recording()
        ids = root.get_span_context()
        assert ids.is_valid
        assert ids.trace_flags.sampled, "a new trace is sampled, as the SDK's default says"
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        assert carrier["traceparent"] == f"00-{ids.trace_id:032x}-{ids.span_id:016x}-01"
        with tracer.start_as_current_span("child") as child:
            assert child.get_span_context().trace_id == ids.trace_id
            assert child.get_span_context().span_id != ids.span_id


def test_an_unrecorded_span_keeps_the_callers_trace_and_sampled_flag() -> None:
    tracer = tracer_provider("nrm-test", Settings()).get_tracer("test")
    span_id = "00f067aa0ba902b7"
    caller = propagate.extract({"traceparent": f"00-{TRACE_ID}-{span_id}-00"})
    span = tracer.start_span("server", context=caller)
    ids = span.get_span_context()
    assert format(ids.trace_id, "032x") == TRACE_ID
    assert format(ids.span_id, "016x") != span_id
    assert not ids.trace_flags.sampled
