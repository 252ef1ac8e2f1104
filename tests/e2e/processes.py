"""Running `nrm` as real processes, as an operator would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

NRM = str(Path(sys.executable).with_name("nrm"))


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nobody listens on, and not one handed out before in this run: the kernel
    may offer a just-closed port again, and two servers told the same port race for it
    (the loser exits, and a readiness check finds the winner)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def nrm_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env.update(extra)
    return env


def run_nrm(*args: str, env: Mapping[str, str], timeout: float = 120) -> None:
    subprocess.run([NRM, *args], env=nrm_env(env), check=True, timeout=timeout)


@contextmanager
def nrm_process(*args: str, env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen([NRM, *args], env=nrm_env(env), stdout=out, stderr=out)
        try:
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(
    url: str, *, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> float:
    """Seconds until `url` answers 200; fails after `timeout` or if the process died."""
    started = time.monotonic()
    while True:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before {url} was ready")
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{url} not ready within {timeout}s")
        time.sleep(0.2)
