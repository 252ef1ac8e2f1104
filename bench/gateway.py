"""Cost of going through the gateway, against a bare token check measured in the same run.

The baseline is a FastAPI app that only verifies the bearer token (nrm.auth.TokenVerifier
on the gateway's keys) and answers 200, served by uvicorn as the runner serves the
gateway, in a process of its own. The measured path is the same request through
`nrm serve gateway` to `nrm serve notify`: GET /api/v1/notify/diagnostics/pings/<uuid>
verifies an admin token and answers 404 at once. Notify is also measured alone, so the
gateway's own share shows apart from the service's.

Everything runs on loopback; the load is N httpx workers for a fixed time, each sending
its next request when the last one is answered.
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
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from gateway.keys import SigningKeys, issue_access_token
from nrm.auth import CurrentPrincipal, TokenVerifier
from nrm.runner import _serve
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


def raw_app(settings: Settings) -> FastAPI:
    app = FastAPI()
    app.state.verifier = TokenVerifier(
        SigningKeys.load(settings), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )

    @app.get("/check")
    async def check(_: CurrentPrincipal) -> dict[str, str]:
        return {"status": "ok"}

    return app


async def load(
    url_for: Callable[[], str],
    headers: Mapping[str, str],
    *,
    expect: int,
    concurrency: int,
    seconds: float,
) -> Measurement:
    latencies: list[float] = []
    unexpected: list[int] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        # A client per worker: one shared pool scans all its connections on every request,
        # and at 16 workers the load generator, not the server, would be what is measured.
        async with httpx.AsyncClient(timeout=10.0, headers=dict(headers)) as client:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                answer = await client.get(url_for())
                latencies.append(time.perf_counter() - sent)
                if answer.status_code != expect:
                    unexpected.append(answer.status_code)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if unexpected:
        raise RuntimeError(
            f"{len(unexpected)} of {len(latencies)} answers were not {expect} "
            f"(e.g. {sorted(set(unexpected))[:5]}): the numbers would mean nothing"
        )
    cuts = statistics.quantiles(latencies, n=100)
    return Measurement(len(latencies), elapsed, cuts[49] * 1000, cuts[98] * 1000, cpu / elapsed)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    """Gateway, notify and the baseline, each its own process; yields their base URLs."""
    ports = {name: _free_port() for name in ("gateway", "notify", "raw")}
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        "NRM_DATA_DIR": str(root / "var"),
        "NRM_GATEWAY_URL": base["gateway"],
        "NRM_NOTIFY_URL": base["notify"],
        **UNREACHABLE_LIMITS,
    }
    migrate = [NRM, "migrate", "all"]
    subprocess.run(migrate, env=_env(env), check=True, capture_output=True)  # noqa: S603
    with ExitStack() as stack:
        for name in ("gateway", "notify"):
            log = root / f"{name}.log"
            stack.enter_context(
                _process([NRM, "serve", name, "--port", str(ports[name])], env, log)
            )
            _wait_ready(f"{base[name]}/readyz", log)
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

            def ping(service: str) -> Callable[[], str]:
                return lambda: f"{base[service]}/api/v1/notify/diagnostics/pings/{uuid.uuid4()}"

            targets: dict[str, tuple[Callable[[], str], int]] = {
                "raw token check": (lambda: f"{base['raw']}/check", 200),
                "notify direct": (ping("notify"), 404),
                "via gateway": (ping("gateway"), 404),
            }
            # One worker shows the latency a request adds; N workers, the throughput.
            for workers in (1, concurrency):
                for name, (url_for, expect) in targets.items():
                    common = {"expect": expect, "concurrency": workers}
                    asyncio.run(load(url_for, headers, seconds=min(1.0, seconds), **common))
                    measured = asyncio.run(load(url_for, headers, seconds=seconds, **common))
                    results[name, workers] = measured

    lines: list[dict[str, float | str]] = [
        {"target": name, "workers": workers, **m.report()} for (name, workers), m in results.items()
    ]
    raw, direct, via = (results[name, concurrency] for name in targets)
    raw_1, direct_1, via_1 = (results[name, 1] for name in targets)
    lines.append(
        {
            "target": "gateway vs raw",
            "workers": concurrency,
            "ratio": round(via.per_second / raw.per_second, 3),
            "added_p50_ms": round(via.p50_ms - raw.p50_ms, 2),
            "added_p99_ms": round(via.p99_ms - raw.p99_ms, 2),
            "added_p50_ms_one_worker": round(via_1.p50_ms - raw_1.p50_ms, 2),
            "added_p99_ms_one_worker": round(via_1.p99_ms - raw_1.p99_ms, 2),
            # The gateway's own share: notify alone against notify behind the gateway.
            "ratio_vs_notify_direct": round(via.per_second / direct.per_second, 3),
            "gateway_share_p50_ms_one_worker": round(via_1.p50_ms - direct_1.p50_ms, 2),
        }
    )
    return lines


def serve_raw(port: int) -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    # The runner's own uvicorn settings, so the baseline differs only in what it runs.
    asyncio.run(_serve(raw_app(settings), "127.0.0.1", port))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.gateway")
    parser.add_argument("--serve-raw", type=int, metavar="PORT", required=True)
    serve_raw(parser.parse_args().serve_raw)
