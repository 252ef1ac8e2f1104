"""The proxy as deployed: `nrm serve gateway` in front of `nrm serve intake` and `notify`.

Every component is its own process, talking HTTP on loopback (SQLite files, and each
process its own in-memory bus: nothing here crosses the bus). Where a real service
cannot show what it received (headers, the timing of a stream), a small HTTP server
in this test process stands in for the referral and fund services.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import http.client
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from gateway.keys import SigningKeys
from nrm.settings import Settings
from tests.e2e.processes import free_port, nrm_process, run_nrm, wait_ready
from tests.support import LocalHttpServer, QuietHandler, bearer

T = TypeVar("T")
MIB = 1024 * 1024
# The gateway is told to give up on a silent service after this long (NRM_UPSTREAM_TIMEOUT_SECONDS).
UPSTREAM_TIMEOUT = 1.0
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"
COMPRESSED = gzip.compress(b"the same bytes, compressed by the service " * 100)


class StandIn:
    """Referral and fund as the gateway sees them, reporting what actually arrived."""

    def __init__(self) -> None:
        self.first_mebibyte_arrived = threading.Event()
        self.client_read_first_chunk = threading.Event()
        self.download_waited_for_client: bool | None = None
        self.release_slow = threading.Event()
        self.port = free_port()
        config = uvicorn.Config(
            self.app(), port=self.port, log_config=None, timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/v1/referral/echo")
        async def echo(request: Request) -> JSONResponse:
            hop_by_hop = {
                "Connection": "X-Upstream-Hop",
                "X-Upstream-Hop": "for the gateway only",
                "Keep-Alive": "timeout=99",
                "Proxy-Authenticate": "Basic",
                "X-End-To-End": "kept",
            }
            return JSONResponse({"headers": dict(request.headers)}, headers=hop_by_hop)

        @app.post("/api/v1/referral/upload")
        async def upload(request: Request) -> dict[str, Any]:
            digest = hashlib.sha256()
            length = 0
            async for chunk in request.stream():
                digest.update(chunk)
                length += len(chunk)
                if length >= MIB:
                    self.first_mebibyte_arrived.set()
            return {"length": length, "sha256": digest.hexdigest()}

        @app.get("/api/v1/referral/download")
        async def download() -> StreamingResponse:
            async def chunks() -> AsyncIterator[bytes]:
                yield b"a" * 65_536
                # Only a gateway that passes the first chunk on lets the client see it.
                waited = await asyncio.to_thread(self.client_read_first_chunk.wait, 5)
                self.download_waited_for_client = waited
                yield b"b" * MIB

            return StreamingResponse(chunks(), media_type="application/octet-stream")

        @app.middleware("http")
        async def raw(request: Request, call_next: Any) -> Any:
            # Before routing: a decoded path with a line break would match no route.
            if not request.url.path.startswith("/api/v1/referral/raw/"):
                return await call_next(request)
            raw_path = request.scope["raw_path"].decode("latin-1")
            return JSONResponse({"raw_path": raw_path, "headers": dict(request.headers)})

        @app.get("/api/v1/referral/sign-in")
        async def sign_in() -> JSONResponse:
            answer = JSONResponse({"signed_in": True})
            answer.set_cookie("session", "for-the-first-caller-only")
            return answer

        @app.get("/api/v1/referral/compressed")
        async def compressed() -> Response:
            return Response(
                COMPRESSED, media_type="text/plain", headers={"Content-Encoding": "gzip"}
            )

        @app.get("/api/v1/fund/requests")
        async def hang() -> dict[str, str]:
            await asyncio.to_thread(self.release_slow.wait, 10)
            return {"status": "too late"}

        return app

    def __enter__(self) -> StandIn:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the stand-in did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release_slow.set()
        self.client_read_first_chunk.set()
        self._server.should_exit = True
        self._thread.join(10)


class Collector(LocalHttpServer):
    """An OTLP/HTTP traces endpoint keeping the spans it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def url(self) -> str:
        return self.base_url

    def spans_of(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [span for span in self.spans if span["trace_id"] == trace_id]

    def _keep(self, body: bytes) -> None:
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            service = next(
                attribute.value.string_value
                for attribute in resource_spans.resource.attributes
                if attribute.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append(
                            {
                                "service": service,
                                "name": span.name,
                                "kind": span.kind,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                            }
                        )

    def _handler(self) -> type[QuietHandler]:
        collector = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector._keep(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.answer(200, "application/x-protobuf", answer)

        return Handler


@dataclass(frozen=True)
class Split:
    gateway: str
    gateway_port: int
    notify_port: int
    env: dict[str, str]
    logs: Path
    stand_in: StandIn
    collector: Collector
    admin: dict[str, str]


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Split]:
    logs = tmp_path_factory.mktemp("proxy-processes")
    ports = {c: free_port() for c in ("gateway", "intake", "notify")}
    with ExitStack() as stack:
        stand_in = stack.enter_context(StandIn())
        collector = stack.enter_context(Collector())
        env = {
            "NRM_DATA_DIR": str(logs / "var"),
            "NRM_GATEWAY_URL": f"http://127.0.0.1:{ports['gateway']}",
            "NRM_INTAKE_URL": f"http://127.0.0.1:{ports['intake']}",
            "NRM_NOTIFY_URL": f"http://127.0.0.1:{ports['notify']}",
            # By name, as deployments name services (an HTTP client treats cookies from a
            # bare IP address differently).
            "NRM_REFERRAL_URL": stand_in.url.replace("127.0.0.1", "localhost"),
            "NRM_FUND_URL": stand_in.url,
            "NRM_UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT),
            "NRM_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "50",  # milliseconds: spans reach the collector at once
            # This is about proxying: the limits have their own tests.
            "NRM_RATE_LIMIT_PER_IP": "0",
            "NRM_RATE_LIMIT_PER_CLIENT": "0",
        }
        run_nrm("migrate", "all", env=env)
        for component in ("gateway", "intake"):
            process = stack.enter_context(
                nrm_process(
                    "serve",
                    component,
                    "--port",
                    str(ports[component]),
                    env=env,
                    log=logs / f"{component}.log",
                )
            )
            wait_ready(f"http://127.0.0.1:{ports[component]}/readyz", process=process)
        settings = Settings(data_dir=logs / "var", _env_file=None)
        yield Split(
            gateway=env["NRM_GATEWAY_URL"],
            gateway_port=ports["gateway"],
            notify_port=ports["notify"],
            env=env,
            logs=logs,
            stand_in=stand_in,
            collector=collector,
            admin=bearer(SigningKeys.load(settings), settings, roles=["admin"]),
        )


@pytest.fixture
def client(split: Split) -> Iterator[httpx.Client]:
    timeout = httpx.Timeout(10.0, connect=2.0)
    with httpx.Client(base_url=split.gateway, headers=split.admin, timeout=timeout) as client:
        yield client


def wait_for(probe: Callable[[], T | None], *, within: float, what: str) -> T:
    """Poll until `probe` returns something other than None; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while (found := probe()) is None:
        assert time.monotonic() < deadline, f"{what} not seen within {within}s"
        time.sleep(0.05)
    return found


def test_a_5_mb_body_reaches_the_service_whole(client: httpx.Client) -> None:
    # Intake hashes an Idempotency-Key request's whole body: a replay matches only if
    # every byte arrived, and a change in the very last byte is noticed.
    body = bytes(range(256)) * (5 * MIB // 256)
    altered = body[:-1] + b"!"
    key = {"Idempotency-Key": str(uuid.uuid4())}

    first = client.post("/api/v1/intake/diagnostics/pings", content=body, headers=key)
    replay = client.post("/api/v1/intake/diagnostics/pings", content=body, headers=key)
    other = client.post("/api/v1/intake/diagnostics/pings", content=altered, headers=key)

    assert first.status_code == 202, first.text
    assert replay.status_code == 202, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert other.status_code == 422, other.text


def test_request_body_is_streamed_to_the_service_not_buffered(
    client: httpx.Client, split: Split
) -> None:
    first_part, rest = b"x" * MIB, b"y" * (4 * MIB)
    seen_before_the_rest: list[bool] = []

    def body() -> Iterator[bytes]:
        yield first_part
        # A gateway that buffered the whole body would never pass this first mebibyte on.
        seen_before_the_rest.append(split.stand_in.first_mebibyte_arrived.wait(5))
        yield rest

    answer = client.post("/api/v1/referral/upload", content=body())

    assert answer.status_code == 200, answer.text
    assert seen_before_the_rest == [True], "the service saw nothing until the body was complete"
    assert answer.json() == {
        "length": 5 * MIB,
        "sha256": hashlib.sha256(first_part + rest).hexdigest(),
    }


def test_response_body_is_streamed_to_the_caller_not_buffered(
    client: httpx.Client, split: Split
) -> None:
    received = bytearray()
    with client.stream("GET", "/api/v1/referral/download") as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_bytes():
            received += chunk
            if len(received) >= 65_536:
                split.stand_in.client_read_first_chunk.set()

    assert split.stand_in.download_waited_for_client is True, "the first chunk was held back"
    assert len(received) == 65_536 + MIB


def test_hop_by_hop_headers_are_dropped_and_forwarding_headers_set(
    client: httpx.Client, split: Split
) -> None:
    answer = client.get(
        "/api/v1/referral/echo",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "for the gateway only",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic c2VjcmV0",
            "X-End-To-End": "kept",
        },
    )

    assert answer.status_code == 200, answer.text
    seen = answer.json()["headers"]
    for name in ("x-secret-hop", "keep-alive", "te", "proxy-authorization"):
        assert name not in seen, f"{name} is hop-by-hop and must not be forwarded"
    assert "x-secret-hop" not in seen.get("connection", "").lower()
    assert seen["x-end-to-end"] == "kept"
    assert seen["authorization"] == split.admin["Authorization"], "services verify it again"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{split.gateway_port}"
    # And on the way back.
    for name in ("x-upstream-hop", "proxy-authenticate"):
        assert name not in answer.headers
    assert answer.headers.get("keep-alive") != "timeout=99"
    assert answer.headers["x-end-to-end"] == "kept"


def test_the_proxy_adds_no_request_headers_of_its_own(split: Split) -> None:
    with httpx.Client(base_url=split.gateway, headers=split.admin) as bare:
        for default in ("user-agent", "accept", "accept-encoding"):
            del bare.headers[default]
        seen = bare.get("/api/v1/referral/echo").json()["headers"]

    for name in ("user-agent", "accept", "accept-encoding"):
        assert name not in seen, f"{name}: the caller sent none, the gateway must not add one"


def test_the_path_reaches_the_service_as_the_caller_encoded_it(client: httpx.Client) -> None:
    # Decoded, %2F would become a path separator and %0D%0A a line break in the request
    # line: a header of the caller's making in front of the service.
    path = "/api/v1/referral/raw/a%2Fb%20c%0D%0AX-Injected:%201"

    answer = client.get(path, params={"q": "x y"})

    assert answer.status_code == 200, answer.text
    assert answer.json()["raw_path"] == path
    assert "x-injected" not in answer.json()["headers"]


def test_a_cookie_a_service_sets_is_not_kept_for_the_next_caller(split: Split) -> None:
    with httpx.Client(base_url=split.gateway, headers=split.admin) as first:
        signed_in = first.get("/api/v1/referral/sign-in")
        assert "session=" in signed_in.headers.get("set-cookie", ""), "passed back to its caller"
    with httpx.Client(base_url=split.gateway, headers=split.admin) as second:
        seen = second.get("/api/v1/referral/echo").json()["headers"]

    assert "cookie" not in seen, "the gateway's client must keep no cookie jar"


def test_dot_segments_are_refused_not_resolved(split: Split) -> None:
    # Resolved on the way on (httpx does it), `notifications/../cases` would reach a
    # collection other than the one a machine client's scope was checked for.
    for path in ("/api/v1/referral/echo/../sign-in", "/api/v1/referral/echo/%2E%2E/sign-in"):
        connection = http.client.HTTPConnection("127.0.0.1", split.gateway_port, timeout=10)
        try:
            connection.request("GET", path, headers=split.admin)  # sent exactly as written
            answer = connection.getresponse()
            body = answer.read().decode()
        finally:
            connection.close()
        assert answer.status == 400, (path, body)
        assert "session=" not in (answer.getheader("set-cookie") or "")


def test_a_compressed_answer_passes_through_byte_for_byte(client: httpx.Client) -> None:
    with client.stream("GET", "/api/v1/referral/compressed") as answer:
        received = b"".join(answer.iter_raw())

    assert answer.headers["content-encoding"] == "gzip"
    assert received == COMPRESSED
    assert answer.headers["content-length"] == str(len(COMPRESSED)), "the length is end to end"


def test_forwarding_headers_forged_by_a_caller_are_replaced(
    client: httpx.Client, split: Split
) -> None:
    # Our caller is on 127.0.0.1, which uvicorn's proxy_headers (on by default) believes.
    answer = client.get(
        "/api/v1/referral/echo",
        headers={
            "X-Forwarded-For": "10.9.9.9",
            "X-Forwarded-Host": "forged.example",
            "X-Forwarded-Proto": "https",
        },
    )

    seen = answer.json()["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{split.gateway_port}"


def test_request_id_is_generated_passed_on_and_echoed(client: httpx.Client) -> None:
    answer = client.get("/api/v1/referral/echo")

    request_id = answer.headers["x-request-id"]
    assert uuid.UUID(request_id)
    assert answer.json()["headers"]["x-request-id"] == request_id
    again = client.get("/api/v1/referral/echo")
    assert again.headers["x-request-id"] != request_id, "one id per request"


def test_request_id_is_echoed_from_a_real_service(client: httpx.Client) -> None:
    generated = client.get("/api/v1/intake/readyz")
    chosen = client.get("/api/v1/intake/readyz", headers={"X-Request-ID": "req-ops-42"})

    assert generated.status_code == chosen.status_code == 200
    assert uuid.UUID(generated.headers["x-request-id"])
    assert chosen.headers["x-request-id"] == "req-ops-42"


def test_an_answer_through_the_gateway_has_one_date_and_names_no_server(
    client: httpx.Client,
) -> None:
    # Both servers add a Date; passed on, the service's made it two (RFC 9110: one).
    answer = client.get("/api/v1/intake/readyz")

    assert answer.status_code == 200
    assert len(answer.headers.get_list("date")) == 1
    assert "server" not in answer.headers


def test_callers_trace_continues_through_the_gateway_span(client: httpx.Client) -> None:
    answer = client.get(
        "/api/v1/referral/echo",
        headers={"traceparent": TRACEPARENT, "tracestate": "vendor=opaque"},
    )

    forwarded = answer.json()["headers"]
    version, trace_id, parent_id, flags = forwarded["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert parent_id != CALLER_SPAN_ID, "the gateway's own span is the service's parent"
    assert "vendor=opaque" in forwarded.get("tracestate", ""), "W3C: tracestate is passed on"


def post_ping_in_trace(client: httpx.Client, trace_id: str) -> None:
    answer = client.post(
        "/api/v1/intake/diagnostics/pings",
        headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN_ID}-01"},
    )
    assert answer.status_code == 202, answer.text


def assert_intake_served_under_the_gateway(collector: Collector, trace_id: str) -> None:
    def intake_server_span() -> dict[str, Any] | None:
        spans = collector.spans_of(trace_id)
        # Kind 2 is SERVER: the span intake opened for the request it received.
        return next((s for s in spans if s["service"] == "nrm-intake" and s["kind"] == 2), None)

    served = wait_for(intake_server_span, within=10, what=f"intake's server span in {trace_id}")

    def path_up_to_the_caller() -> list[str] | None:
        by_id = {span["span_id"]: span for span in collector.spans_of(trace_id)}
        span, services = served, []
        while span["parent_span_id"] in by_id:
            span = by_id[span["parent_span_id"]]
            services.append(span["service"])
        return services if span["parent_span_id"] == CALLER_SPAN_ID else None

    between = wait_for(path_up_to_the_caller, within=5, what="spans up to the caller's")
    assert between, "intake's span hangs under the gateway's, not straight under the caller's"
    assert set(between) == {"nrm-gateway"}


def test_services_spans_join_the_callers_trace_under_the_gateway(split: Split) -> None:
    # After the 5 MB tests the gateway's pooled connection to intake carries the context
    # leak below, so without reset_contextvars this fails too when the module runs whole.
    with httpx.Client(base_url=split.gateway, headers=split.admin, timeout=10) as fresh:
        trace_id = uuid.uuid4().hex
        post_ping_in_trace(fresh, trace_id)

    assert_intake_served_under_the_gateway(split.collector, trace_id)


def test_a_large_upload_does_not_leak_its_trace_into_the_next_request(split: Split) -> None:
    # Was a product bug, now fixed: a body over uvicorn's 64 KiB high-water mark makes it
    # pause and resume reading inside the request's span; the next request on the same
    # connection then starts in that stale context (CPython #140947) and is recorded in
    # the previous request's trace. The fix is uvicorn's reset_contextvars=True.
    with httpx.Client(base_url=split.gateway, headers=split.admin, timeout=10) as keep_alive:
        large = keep_alive.post("/api/v1/intake/diagnostics/pings", content=b"x" * 512 * 1024)
        assert large.status_code == 202, large.text
        trace_id = uuid.uuid4().hex
        post_ping_in_trace(keep_alive, trace_id)

    assert_intake_served_under_the_gateway(split.collector, trace_id)


def test_service_logs_carry_the_callers_trace_id(client: httpx.Client, split: Split) -> None:
    # Was a product bug, now fixed: services write no log line per request, so a request's
    # trace id appears in no service log. See the report to the lead ("request log line").
    warm_up = client.post("/api/v1/intake/diagnostics/pings")  # intake fetches the JWKS once
    assert warm_up.status_code == 202, warm_up.text
    trace_id = uuid.uuid4().hex
    post_ping_in_trace(client, trace_id)

    def logged_with_trace_id() -> str | None:
        lines = (split.logs / "intake.log").read_text().splitlines()
        return next((line for line in lines if line.startswith("{") and trace_id in line), None)

    line = wait_for(logged_with_trace_id, within=3, what=f"a log line of intake with {trace_id}")
    assert json.loads(line)["trace_id"] == trace_id


def test_service_down_is_a_quick_502_problem(client: httpx.Client, split: Split) -> None:
    ping = f"/api/v1/notify/diagnostics/pings/{uuid.uuid4()}"
    with nrm_process(
        "serve",
        "notify",
        "--port",
        str(split.notify_port),
        env=split.env,
        log=split.logs / "notify.log",
    ) as notify:
        wait_ready(f"http://127.0.0.1:{split.notify_port}/readyz", process=notify)
        assert client.get(ping).status_code == 404, "notify answers through the gateway"
        notify.kill()
        notify.wait(10)

        for _ in range(2):  # the pooled connection, then a fresh connect
            answer = client.get(ping)

            # A 502, not a 504: the gateway did not sit out the upstream timeout.
            assert answer.status_code == 502, answer.text
            assert answer.headers["content-type"] == "application/problem+json"


def test_silent_service_is_a_504_problem_after_the_upstream_timeout(
    client: httpx.Client,
) -> None:
    # Was a product bug, now fixed: the gateway waited 30 s whatever
    # NRM_UPSTREAM_TIMEOUT_SECONDS said. The stand-in holds for 10 s: a 504 inside the
    # client's own limit means the setting was honoured.
    try:
        answer = client.get("/api/v1/fund/requests", timeout=UPSTREAM_TIMEOUT + 4)
    except httpx.ReadTimeout:
        pytest.fail(
            f"no answer within {UPSTREAM_TIMEOUT + 4}s: the gateway ignores "
            "NRM_UPSTREAM_TIMEOUT_SECONDS",
            pytrace=False,
        )

    assert answer.status_code == 504, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def test_malformed_traceparent_is_replaced_by_a_valid_one(client: httpx.Client) -> None:
    answer = client.get("/api/v1/referral/echo", headers={"traceparent": "not-a-traceparent"})

    forwarded = answer.json()["headers"]
    assert answer.status_code == 200
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", forwarded["traceparent"])
