"""Process settings: every knob is an `NRM_` environment variable (see CONTRACT.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Component = Literal["gateway", "intake", "referral", "fund", "notify"]
COMPONENTS: tuple[Component, ...] = ("gateway", "intake", "referral", "fund", "notify")
SERVICES: tuple[Component, ...] = ("intake", "referral", "fund", "notify")

DEFAULT_ISSUER = "urn:open-nrm:gateway"
DEFAULT_AUDIENCE = "urn:open-nrm:api"


class InsecureConfiguration(RuntimeError):
    """Raised at start-up when production would run on development keys or secrets."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NRM_", extra="ignore")

    env: Literal["dev", "prod"] = "dev"
    data_dir: Path = Path("./var")
    log_level: str = "INFO"

    broker_url: str | None = None
    delivery_limit: int = Field(default=5, ge=1, le=100)

    gateway_database_url: str | None = None
    intake_database_url: str | None = None
    referral_database_url: str | None = None
    fund_database_url: str | None = None
    notify_database_url: str | None = None

    gateway_url: str | None = None
    intake_url: str | None = None
    referral_url: str | None = None
    fund_url: str | None = None
    notify_url: str | None = None

    jwks_url: str | None = None
    jwt_issuer: str = DEFAULT_ISSUER
    jwt_audience: str = DEFAULT_AUDIENCE
    jwt_algorithms: list[str] = ["RS256"]
    # The gateway's RSA signing key (PEM). Unset in dev: one is generated under data_dir.
    signing_key_file: Path | None = None

    otlp_endpoint: str | None = None
    redis_url: str | None = None
    notify_webhook_allowlist: str = ""

    def database_url(self, component: Component) -> str:
        configured: str | None = getattr(self, f"{component}_database_url")
        if configured:
            return configured
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / f'{component}.db'}"

    def service_url(self, component: Component) -> str | None:
        url: str | None = getattr(self, f"{component}_url")
        return url.rstrip("/") if url else None

    def effective_jwks_url(self) -> str | None:
        """Where services fetch signing keys: an external provider, else the gateway."""
        if self.jwks_url:
            return self.jwks_url
        gateway = self.service_url("gateway")
        return f"{gateway}/.well-known/jwks.json" if gateway else None

    def check_production(self, component: Component) -> None:
        """Refuse to run production on generated keys or well-known default secrets."""
        if self.env != "prod":
            return
        if component == "gateway" and self.signing_key_file is None:
            raise InsecureConfiguration(
                "NRM_SIGNING_KEY_FILE must name the gateway's RSA key in production; "
                "generated development keys are refused."
            )
        if self.broker_url and _has_default_credentials(self.broker_url):
            raise InsecureConfiguration(
                "NRM_BROKER_URL uses RabbitMQ's default guest credentials; "
                "production needs its own user and password."
            )
        if component != "gateway" and not self.effective_jwks_url():
            raise InsecureConfiguration(
                "NRM_JWKS_URL (or NRM_GATEWAY_URL) must say whose tokens to trust in production."
            )


def _has_default_credentials(url: str) -> bool:
    parts = urlsplit(url)
    return parts.username in (None, "guest") and parts.password in (None, "guest")
