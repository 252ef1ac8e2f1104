"""Settings come from NRM_ variables; production refuses development keys and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from nrm.settings import COMPONENTS, InsecureConfiguration, Settings


def test_defaults_are_embedded_sqlite_files_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    for component in COMPONENTS:
        assert settings.database_url(component) == (
            f"sqlite+aiosqlite:///{tmp_path.resolve() / f'{component}.db'}"
        )
    assert settings.broker_url is None


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NRM_FUND_DATABASE_URL", "postgresql+asyncpg://db/fund")
    monkeypatch.setenv("NRM_INTAKE_URL", "http://intake:8000/")
    monkeypatch.setenv("NRM_ENV", "prod")
    settings = Settings()
    assert settings.database_url("fund") == "postgresql+asyncpg://db/fund"
    assert settings.service_url("intake") == "http://intake:8000"
    assert settings.env == "prod"


def test_prod_gateway_refuses_a_generated_signing_key(tmp_path: Path) -> None:
    with pytest.raises(InsecureConfiguration, match="NRM_SIGNING_KEY_FILE"):
        Settings(env="prod", data_dir=tmp_path).check_production("gateway")


@pytest.mark.parametrize("broker_url", ["amqp://guest:guest@rabbit:5672/", "amqp://rabbit:5672/"])
def test_prod_refuses_rabbitmq_default_credentials(tmp_path: Path, broker_url: str) -> None:
    settings = Settings(
        env="prod", data_dir=tmp_path, broker_url=broker_url, jwks_url="https://idp/jwks"
    )
    with pytest.raises(InsecureConfiguration, match="NRM_BROKER_URL"):
        settings.check_production("intake")


def test_prod_service_must_know_whose_tokens_to_trust(tmp_path: Path) -> None:
    with pytest.raises(InsecureConfiguration, match="NRM_JWKS_URL"):
        Settings(env="prod", data_dir=tmp_path).check_production("fund")


def test_prod_with_proper_configuration_starts(tmp_path: Path) -> None:
    settings = Settings(
        env="prod",
        data_dir=tmp_path,
        broker_url="amqps://nrm:s3cret@rabbit:5671/",
        gateway_url="http://gateway:8000",
        signing_key_file=tmp_path / "key.pem",
    )
    for component in COMPONENTS:
        settings.check_production(component)


def test_dev_is_permissive(tmp_path: Path) -> None:
    for component in COMPONENTS:
        Settings(data_dir=tmp_path, broker_url="amqp://guest:guest@x/").check_production(component)
