"""Our envelopes are CloudEvents 1.0 (checked with the official SDK) and carry thin data."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from cloudevents.core.formats.json import JSONFormat
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from nrm.events import MalformedEvent, envelope_for, parse_data, parse_envelope
from nrm.outbox import current_traceparent
from services.intake.events import DiagnosticPinged


def _ping() -> DiagnosticPinged:
    return DiagnosticPinged(ping_id=uuid.uuid4(), org_id="org-police")


def test_envelope_is_a_cloudevent_the_official_sdk_reads() -> None:
    ping = _ping()
    moment = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    body = envelope_for(ping, traceparent=traceparent, now=moment).to_json()
    event = JSONFormat().read(None, body)

    assert event.get_specversion() == "1.0"
    assert event.get_type() == "nrm.intake.diagnostic.pinged.v1"
    assert event.get_source() == "/nrm/intake"
    assert event.get_subject() == str(ping.ping_id)
    assert event.get_time() == moment
    assert event.get_datacontenttype() == "application/json"
    assert event.get_extension("traceparent") == traceparent
    assert event.get_extension("dataclassification") == "internal"
    assert event.get_data() == {"ping_id": str(ping.ping_id), "org_id": "org-police"}
    uuid.UUID(event.get_id())


def test_envelope_round_trips_to_the_typed_event() -> None:
    ping = _ping()
    envelope = parse_envelope(envelope_for(ping).to_json())
    assert parse_data(envelope, DiagnosticPinged) == ping


def test_event_data_refuses_fields_it_does_not_declare() -> None:
    # Thin by construction: a stray field (say, a name) cannot ride along.
    with pytest.raises(ValueError, match="extra"):
        DiagnosticPinged(ping_id=uuid.uuid4(), org_id="o", full_name="x")  # type: ignore[call-arg]


def test_envelope_without_a_required_attribute_is_malformed() -> None:
    body = envelope_for(_ping()).model_dump(mode="json")
    del body["source"]
    with pytest.raises(MalformedEvent, match="source"):
        parse_envelope(json.dumps(body).encode())


def test_traceparent_of_the_current_span_goes_into_the_envelope() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("register case") as span:
        traceparent = current_traceparent()
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
    assert traceparent is not None
    assert format(span.get_span_context().trace_id, "032x") in traceparent
    assert traceparent == carrier["traceparent"], "as the W3C propagator writes it"
    assert envelope_for(_ping(), traceparent=traceparent).traceparent == traceparent


def test_no_traceparent_outside_a_span() -> None:
    assert current_traceparent() is None
