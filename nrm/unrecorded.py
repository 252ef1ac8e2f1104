"""Spans for a process with nowhere to send them: ids and context, nothing recorded.

Without NRM_OTLP_ENDPOINT a recording span is pure cost: attributes, events, links and
timings kept for a processor that does not exist (at the gateway, a tenth of a proxied
request's CPU). What spans still do there is carry ids: every log line names its trace
and span, and the trace context goes on to services and into events. These spans keep
exactly that. A span under a caller's context keeps its trace id and sampled flag; a
new trace is marked sampled, as the SDK's default sampler would mark it, so a service
that does export still records what it would record behind a gateway that exports.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

_IDS = RandomIdGenerator()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class UnrecordedTracer(trace.NoOpTracer):
    def start_span(
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
        else:
            trace_id, flags, state = _IDS.generate_trace_id(), _SAMPLED, TraceState()
        return NonRecordingSpan(SpanContext(trace_id, _IDS.generate_span_id(), False, flags, state))


class UnrecordedTracerProvider(TracerProvider):
    """The SDK's provider (so shutdown and the like work as anywhere), handing out
    tracers that record nothing."""

    _tracer = UnrecordedTracer()

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self._tracer
