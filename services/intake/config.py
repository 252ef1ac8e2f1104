"""Intake's own settings (NRM_INTAKE_*)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NRM_INTAKE_", extra="ignore")

    # "kid:base64key,kid:base64key": 256-bit AES keys; the last one wraps new data keys.
    master_keys: str | None = None
    # 256-bit base64 HMAC key for the deduplication blind indexes.
    index_key: str | None = None
