"""Process settings: every knob is an `NRM_` environment variable (see CONTRACT.md)."""

from __future__ import annotations

from datetime import timedelta
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

    # How long the gateway waits for a service's answer before answering 504.
    upstream_timeout_seconds: float = Field(default=30.0, gt=0)
    # How long bookkeeping rows are kept (see nrm/retention.py).
    outbox_retention_hours: float = Field(default=168.0, gt=0)
    inbox_retention_hours: float = Field(default=720.0, gt=0)
    idempotency_retention_hours: float = Field(default=168.0, gt=0)

    jwks_url: str | None = None
    jwt_issuer: str = DEFAULT_ISSUER
    jwt_audience: str = DEFAULT_AUDIENCE
    jwt_algorithms: list[str] = ["RS256"]
    # Where roles and the organisation sit in an external provider's tokens, e.g.
    # Keycloak: NRM_JWT_ROLES_CLAIM=realm_access.roles.
    jwt_roles_claim: str = "roles"
    jwt_org_claim: str = "org"
    token_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    # The gateway's RSA signing key (PEM). Unset in dev: one is generated under data_dir.
    signing_key_file: Path | None = None

    otlp_endpoint: str | None = None
    redis_url: str | None = None
    notify_webhook_allowlist: str = ""

    # Gateway token buckets: sustained requests per second and burst; 0 turns one off.
    rate_limit_per_ip: float = Field(default=20.0, ge=0)
    rate_limit_ip_burst: int = Field(default=40, ge=0)
    rate_limit_per_client: float = Field(default=50.0, ge=0)
    rate_limit_client_burst: int = Field(default=100, ge=0)
    # Stricter, per IP, on /auth/token: every try there costs a password hash.
    rate_limit_token_per_ip: float = Field(default=1.0, ge=0)
    rate_limit_token_burst: int = Field(default=20, ge=0)
    rate_limit_prefix: str = "nrm:rl:"
    # Comma-separated CIDRs of reverse proxies whose X-Forwarded-For the gateway believes.
    trusted_proxies: str = ""
    # Comma-separated browser origins allowed to call the API (CORS); empty: none.
    cors_origins: str = ""

    @property
    def token_ttl(self) -> timedelta:
        return timedelta(seconds=self.token_ttl_seconds)

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
