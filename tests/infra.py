"""Reaching the real PostgreSQL and RabbitMQ from tests.

Tests that need them skip when they are unreachable, unless
NRM_REQUIRE_REAL_INFRA=1 (CI), where an unreachable server fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid

import pytest

POSTGRES_HOST = os.environ.get("NRM_TEST_POSTGRES_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("NRM_TEST_POSTGRES_PORT", "5432"))
POSTGRES_USER = os.environ.get("NRM_TEST_POSTGRES_USER", "postgres")
RABBIT_HOST = os.environ.get("NRM_TEST_RABBITMQ_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("NRM_TEST_RABBITMQ_PORT", "5672"))

RUN_ID = uuid.uuid4().hex[:10]


def real_infra_required() -> bool:
    return os.environ.get("NRM_REQUIRE_REAL_INFRA") == "1"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need(kind: str, host: str, port: int) -> None:
    if reachable(host, port):
        return
    message = f"{kind} is not reachable at {host}:{port}"
    if real_infra_required():
        pytest.fail(f"{message} and NRM_REQUIRE_REAL_INFRA=1", pytrace=False)
    pytest.skip(message)


def rabbitmqctl(*args: str) -> str:
    binary = shutil.which("rabbitmqctl")
    if binary is None:
        message = "rabbitmqctl is not installed"
        if real_infra_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    done = subprocess.run(
        [binary, "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout
