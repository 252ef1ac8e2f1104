"""Checks of docker-compose.yml and deploy/ that need neither Docker nor a cluster."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Set
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from nrm.settings import SERVICES, Component, Settings

REPO = Path(__file__).resolve().parents[2]

_NRM_NAME = re.compile(r"\bNRM_[A-Z0-9_]+\b")


def settings_env_names() -> frozenset[str]:
    """Every variable the kernel's Settings or a service's own settings (config.py) read."""
    names = {f"NRM_{name.upper()}" for name in Settings.model_fields}
    for service in SERVICES:
        try:
            module = importlib.import_module(f"services.{service}.config")
        except ModuleNotFoundError:
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseSettings)
                and value is not BaseSettings
            ):
                prefix = str(value.model_config.get("env_prefix", ""))
                names |= {f"{prefix}{name}".upper() for name in value.model_fields}
    return frozenset(names)


def unknown_nrm_names(text: str, allowed: Set[str] = frozenset()) -> set[str]:
    """`NRM_*` names in `text` that no `Settings` field reads: typos the apps would ignore."""
    return set(_NRM_NAME.findall(text)) - settings_env_names() - allowed


def load_yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path} is not a YAML mapping"
    return document


def run_tool(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a console script installed next to this interpreter (the project's .venv)."""
    executable = Path(sys.executable).parent / name
    if not executable.exists():
        pytest.fail(f"{name} is missing: install the dev extras (pip install -e '.[dev]')")
    return subprocess.run(
        [str(executable), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def check_production(env: dict[str, str], component: Component, mp: pytest.MonkeyPatch) -> None:
    """Run the start-up production check in exactly the environment a container gets."""
    for key in [key for key in os.environ if key.startswith("NRM_")]:
        mp.delenv(key)
    for key, value in env.items():
        mp.setenv(key, value)
    Settings().check_production(component)
