"""Cost of going through the gateway, against a bare token check measured in the same run.

The baseline is a FastAPI app that only verifies the bearer token (nrm.auth.TokenVerifier
on the gateway's keys) and answers 200, served by uvicorn as the runner serves the
gateway, in a process of its own. It is measured twice: as services verify (a token
verified once is recognised after) and with the RSA signature checked on every request.
The measured path is the same request through `nrm serve gateway`, whose upstream for
one service is that same app: the gateway adds everything it does in production (rate
limits, token check, proxy, headers, tracing, the request log) and nothing else differs.

Everything runs on loopback. The load is N workers for a fixed time, each on one
keep-alive connection, sending its next request when the last one is answered. They
speak HTTP/1.1 over bare asyncio streams: an httpx client costs more CPU per request
than the baseline server, and on two cores the load generator would be what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI, Request

from gateway.keys import SigningKeys, issue_access_token
from nrm import auth, cli
from nrm.auth import CurrentPrincipal, TokenVerifier, bearer_token
from nrm.runner import _serve, run_server
from nrm.settings import Settings
from nrm.telemetry import setup_logging

NRM = str(Path(sys.executable).with_name("nrm"))
# High enough never to refuse the bench, but the limiter still runs as in production.
UNREACHABLE_LIMITS = {
    "NRM_RATE_LIMIT_PER_IP": "1000000",
    "NRM_RATE_LIMIT_IP_BURST": "1000000",
    "NRM_RATE_LIMIT_PER_CLIENT": "1000000",
    "NRM_RATE_LIMIT_CLIENT_BURST": "1000000",
}


@dataclass(frozen=True)
class Measurement:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    # Share of one core the load generator used: near 1.0, it is what limits the numbers.
    client_cpu: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def report(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "rps": round(self.per_second, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "client_cpu": round(self.client_cpu, 2),
        }


# The trivial service endpoint: the gateway forwards /api/v1/<service>/... unchanged.
SERVICE = "notify"
CHECK_PATH = f"/api/v1/{SERVICE}/check"
# The same check with the RSA signature verified on every request: what a token check
# cost before verifiers remembered the tokens they had verified.
CHECK_EACH_PATH = "/check-signature-each-time"


class Forgetful(TokenVerifier):
    """A verifier that checks the signature of every token it is shown, every time."""

    REMEMBERED = 0


def raw_app(settings: Settings) -> FastAPI:
    app = FastAPI()
    keys = SigningKeys.load(settings)
    issuer, audience = settings.jwt_issuer, settings.jwt_audience
    app.state.verifier = TokenVerifier(keys, issuer=issuer, audience=audience)
    forgetful = Forgetful(keys, issuer=issuer, audience=audience)

    @app.get(CHECK_PATH)
    async def check(_: CurrentPrincipal) -> dict[str, str]:
        return {"status": "ok"}

    @app.get(CHECK_EACH_PATH)
    async def check_each(request: Request) -> dict[str, str]:
        await forgetful.verify(bearer_token(request.scope["headers"]) or "")
        return {"status": "ok"}

    return app


class Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads whole answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        url = httpx.URL(base_url)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        return cls(reader, writer)

    async def get(self, request: bytes) -> int:
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = head.lower()
        if b"transfer-encoding: chunked" in headers:
            while size := int((await self._reader.readuntil(b"\r\n")).strip(), 16):
                await self._reader.readexactly(size + 2)
            await self._reader.readuntil(b"\r\n")
        else:
            length = headers.partition(b"content-length: ")[2].partition(b"\r\n")[0]
            await self._reader.readexactly(int(length or 0))
        return status

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


def get_request(base_url: str, path: str, headers: Mapping[str, str]) -> bytes:
    url = httpx.URL(base_url)
    lines = [f"GET {path} HTTP/1.1", f"Host: {url.host}:{url.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def load(
    base_url: str,
    headers: Mapping[str, str],
    *,
    path: str = CHECK_PATH,
    concurrency: int,
    seconds: float,
) -> Measurement:
    latencies: list[float] = []
    unexpected: list[int] = []
    request = get_request(base_url, path, headers)
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        connection = await Connection.open(base_url)
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                status = await connection.get(request)
                latencies.append(time.perf_counter() - sent)
                if status != 200:
                    unexpected.append(status)
        finally:
            await connection.close()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if unexpected:
        raise RuntimeError(
            f"{len(unexpected)} of {len(latencies)} answers were not 200 "
            f"(e.g. {sorted(set(unexpected))[:5]}): the numbers would mean nothing"
        )
    cuts = statistics.quantiles(latencies, n=100)
    return Measurement(len(latencies), elapsed, cuts[49] * 1000, cuts[98] * 1000, cpu / elapsed)


def _free_ports(count: int) -> list[int]:
    """Distinct ports: the sockets stay open until all are chosen, so none repeats."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    return {**env, **extra}


@contextmanager
def _process(args: list[str], env: Mapping[str, str], log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=_env(env), stdout=out, stderr=out)  # noqa: S603
        try:
            yield
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(url: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {timeout}s; see {log}")


@contextmanager
def _platform(root: Path) -> Iterator[dict[str, str]]:
    """The baseline app and a gateway in front of it, each its own process; their URLs."""
    ports = dict(zip(("gateway", "gateway_each", "raw"), _free_ports(3), strict=True))
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        "NRM_DATA_DIR": str(root / "var"),
        "NRM_GATEWAY_URL": base["gateway"],
        f"NRM_{SERVICE.upper()}_URL": base["raw"],
        **UNREACHABLE_LIMITS,
    }
    migrate = [NRM, "migrate", "gateway"]
    subprocess.run(migrate, env=_env(env), check=True, capture_output=True)  # noqa: S603
    with ExitStack() as stack:
        log = root / "gateway.log"
        stack.enter_context(
            _process([NRM, "serve", "gateway", "--port", str(ports["gateway"])], env, log)
        )
        _wait_ready(f"{base['gateway']}/readyz", log)
        # The same gateway, but checking every token's signature on every request.
        each = [sys.executable, "-m", "bench.gateway", "--serve-forgetful-gateway"]
        log = root / "gateway_each.log"
        stack.enter_context(_process([*each, str(ports["gateway_each"])], env, log))
        _wait_ready(f"{base['gateway_each']}/readyz", log)
        # The gateway made its signing key on start; the baseline verifies against it.
        raw = [sys.executable, "-m", "bench.gateway", "--serve-raw", str(ports["raw"])]
        stack.enter_context(_process(raw, env, root / "raw.log"))
        _wait_ready(f"{base['raw']}/docs", root / "raw.log")
        yield base


def _admin_headers(root: Path) -> dict[str, str]:
    settings = Settings(data_dir=root / "var", _env_file=None)
    token, _ = issue_access_token(
        SigningKeys.load(settings),
        subject="bench",
        org="org-bench",
        roles=["admin"],
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return {"Authorization": f"Bearer {token}"}


def run(concurrency: int, seconds: float) -> list[dict[str, float | str]]:
    results: dict[tuple[str, int], Measurement] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        with _platform(root) as base:
            headers = _admin_headers(root)
            targets = {
                "raw token check": (base["raw"], CHECK_PATH),
                "via gateway": (base["gateway"], CHECK_PATH),
                "raw, signature checked each time": (base["raw"], CHECK_EACH_PATH),
                "via gateway, signature checked each time": (base["gateway_each"], CHECK_PATH),
            }
            # One worker shows the latency a request adds; N workers, the throughput.
            for workers in (1, concurrency):
                for name, (url, path) in targets.items():
                    for timed in (min(1.0, seconds), seconds):  # a warm-up, then the run
                        results[name, workers] = asyncio.run(
                            load(url, headers, path=path, concurrency=workers, seconds=timed)
                        )

    lines: list[dict[str, float | str]] = [
        {"target": name, "workers": workers, **m.report()} for (name, workers), m in results.items()
    ]
    raw, via, raw_each, via_each = (results[name, concurrency] for name in targets)
    raw_1, via_1, _, _ = (results[name, 1] for name in targets)
    lines.append(
        {
            "target": "gateway vs raw",
            "workers": concurrency,
            "ratio": round(via.per_second / raw.per_second, 3),
            # Both sides checking the RSA signature on every request, as before 0.7.0.
            "ratio_signature_each_time": round(via_each.per_second / raw_each.per_second, 3),
            "added_p50_ms": round(via.p50_ms - raw.p50_ms, 2),
            "added_p99_ms": round(via.p99_ms - raw.p99_ms, 2),
            "added_p50_ms_one_worker": round(via_1.p50_ms - raw_1.p50_ms, 2),
            "added_p99_ms_one_worker": round(via_1.p99_ms - raw_1.p99_ms, 2),
        }
    )
    return lines


def serve_raw(port: int) -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    # The runner's own uvicorn settings, so the baseline differs only in what it runs.
    run_server(_serve(raw_app(settings), "127.0.0.1", port))


def serve_forgetful_gateway(port: int) -> int:
    auth.TokenVerifier.REMEMBERED = 0  # every verifier the gateway makes, made forgetful
    return cli.main(["serve", "gateway", "--port", str(port)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.gateway")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--serve-raw", type=int, metavar="PORT")
    role.add_argument("--serve-forgetful-gateway", type=int, metavar="PORT")
    args = parser.parse_args()
    if args.serve_raw:
        serve_raw(args.serve_raw)
    else:
        sys.exit(serve_forgetful_gateway(args.serve_forgetful_gateway))
