"""Notify's own settings: `NRM_NOTIFY_*` environment variables, read in the lifespan."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from nrm.settings import InsecureConfiguration, Settings


class NotifyConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NRM_NOTIFY_", extra="ignore")

    # Links in messages point here; messages carry ids, the console shows the rest.
    console_url: str = "http://127.0.0.1:8000"

    # Base64 of 32 bytes: seals webhook secrets at rest. Dev: generated under the data dir.
    secret_key: str | None = None

    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_concurrency_per_subscription: int = Field(default=4, ge=1, le=64)
    delivery_concurrency: int = Field(default=64, ge=1, le=1000)
    max_attempts: int = Field(default=8, ge=1, le=50)
    retry_base_seconds: float = Field(default=10.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)

    # SMTP; without a host, e-mails are written as .eml files under <data dir>/mail.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    mail_from: str = "Open NRM <notify@open-nrm.invalid>"

    # SMS over an HTTP gateway; off unless a URL is set.
    sms_gateway_url: str | None = None
    sms_username: str | None = None
    sms_password: str | None = None
    # JSON object: ISO country code -> sender name, "*" for any other country.
    sms_senders: dict[str, str] = {"*": "OpenNRM"}


def load_config(settings: Settings) -> NotifyConfig:
    config = NotifyConfig()
    if settings.env == "prod" and not config.secret_key:
        raise InsecureConfiguration(
            "NRM_NOTIFY_SECRET_KEY must be set in production (base64 of 32 random bytes)."
        )
    return config


def secret_key(config: NotifyConfig, settings: Settings) -> bytes:
    """The key sealing webhook secrets: configured, or a dev key kept under the data dir."""
    if config.secret_key:
        key = base64.b64decode(config.secret_key)
    else:
        key = _dev_key(settings.data_dir / "keys" / "notify-secret.key")
    if len(key) != 32:
        raise InsecureConfiguration("NRM_NOTIFY_SECRET_KEY must be base64 of 32 bytes.")
    return key


def _dev_key(path: Path) -> bytes:
    if path.exists():
        return base64.b64decode(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(base64.b64encode(key))
    return key
