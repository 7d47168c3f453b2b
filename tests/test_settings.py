"""Settings come from RG_* variables and from a .env file (unit tests, no broker)."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No RG_* variable or .env file of the developer's may leak into these tests.
    import os  # noqa: PLC0415

    for name in list(os.environ):
        if name.startswith("RG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_match_the_contract() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap_servers == ["127.0.0.1:9092"]
    assert settings.kafka_client_id == "ractogateway-kafka"
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.model_fields_set == set()


def test_environment_variables_with_the_rg_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_KAFKA_BOOTSTRAP_SERVERS", "b1:9092, b2:9093")
    monkeypatch.setenv("RG_PORT", "9000")
    monkeypatch.setenv("RG_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("RG_KAFKA_SASL_PASSWORD", "hunter2")
    settings = Settings()
    assert settings.kafka_bootstrap_servers == ["b1:9092", "b2:9093"]
    assert settings.port == 9000
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert "hunter2" not in repr(settings)
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "hunter2"
    assert "kafka_bootstrap_servers" in settings.model_fields_set


def test_dotenv_file_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "RG_KAFKA_CLIENT_ID=from-dotenv\nRG_HOST=0.0.0.0\nRG_PORT=7000\n"
    )
    monkeypatch.setenv("RG_PORT", "7001")
    settings = Settings()
    assert settings.kafka_client_id == "from-dotenv"
    assert settings.host == "0.0.0.0"
    assert settings.port == 7001


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RG_PORT", "not-a-port"),
        ("RG_PORT", "70000"),
        ("RG_KAFKA_SECURITY_PROTOCOL", "CARRIER_PIGEON"),
        ("RG_KAFKA_BOOTSTRAP_SERVERS", " , "),
    ],
)
def test_invalid_values_are_rejected_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("RG_").lower()):
        Settings()


def test_get_settings_reads_once() -> None:
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


def test_unit_read_timeout_and_connection_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert defaults.request_read_timeout_s == 10.0
    assert defaults.max_connections == 1000
    monkeypatch.setenv("RG_REQUEST_READ_TIMEOUT_S", "2.5")
    monkeypatch.setenv("RG_MAX_CONNECTIONS", "20")
    settings = Settings()
    assert settings.request_read_timeout_s == 2.5
    assert settings.max_connections == 20


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RG_REQUEST_READ_TIMEOUT_S", "0"),
        ("RG_REQUEST_READ_TIMEOUT_S", "-1"),
        ("RG_REQUEST_READ_TIMEOUT_S", "soon"),
        ("RG_MAX_CONNECTIONS", "0"),
        ("RG_MAX_CONNECTIONS", "many"),
        ("RG_MAX_CONNECTIONS", "2.5"),
    ],
)
def test_unit_invalid_read_timeout_or_connection_bound_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("RG_").lower()):
        Settings()


def test_the_in_flight_bytes_bound_holds_at_least_one_whole_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().max_in_flight_bytes == 64 * 1024 * 1024
    monkeypatch.setenv("RG_MAX_IN_FLIGHT_BYTES", str(4 * 1024 * 1024))
    assert Settings().max_in_flight_bytes == 4 * 1024 * 1024
    # A body of the largest size could never be admitted: refused at start, naming both. Its
    # bytes count 3 times (what they cost in memory): 2 MiB do not hold a body of 1 MiB.
    monkeypatch.setenv("RG_MAX_IN_FLIGHT_BYTES", str(2 * 1024 * 1024))
    with pytest.raises(ValidationError, match=r"max_in_flight_bytes .* 3 x max_body_bytes"):
        Settings()
    monkeypatch.setenv("RG_MAX_IN_FLIGHT_BYTES", str(4 * 1024 * 1024))
    monkeypatch.setenv("RG_MAX_BODY_BYTES", str(8 * 1024 * 1024))
    with pytest.raises(ValidationError, match=r"max_in_flight_bytes .* max_body_bytes"):
        Settings()


@pytest.mark.parametrize(
    "name",
    ["spool_dir", "audit_signing_key_file", "audit_retired_keys_dir", "redaction_key_file"],
)
@pytest.mark.parametrize("value", ["", "  "])
def test_unit_an_empty_path_setting_means_unset(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The image sets RG_SPOOL_DIR; `RG_SPOOL_DIR=` turns the spool off (a chart value does
    # this). Read as a path, "" would be "." and the spool would go to the working folder.
    monkeypatch.setenv(f"RG_{name.upper()}", value)
    assert getattr(Settings(), name) is None


def test_schema_contract_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().schema_registry_url is None  # contracts off by default
    monkeypatch.setenv("RG_SCHEMA_REGISTRY_URL", "https://registry.test:8081")
    monkeypatch.setenv("RG_SCHEMA_REGISTRY_USERNAME", "rg")
    monkeypatch.setenv("RG_SCHEMA_REGISTRY_PASSWORD", "s3cret-registry")
    monkeypatch.setenv("RG_SCHEMA_REGISTRY_CA_FILE", "/etc/ca.pem")
    monkeypatch.setenv("RG_SCHEMA_WIRE_FORMAT", "confluent")
    monkeypatch.setenv("RG_SCHEMA_REQUIRED", "true")
    monkeypatch.setenv("RG_SCHEMA_CACHE_S", "5")
    settings = Settings()
    assert settings.schema_registry_url == "https://registry.test:8081"
    assert settings.schema_registry_username == "rg"
    assert settings.schema_registry_password is not None
    assert settings.schema_registry_password.get_secret_value() == "s3cret-registry"
    assert "s3cret-registry" not in repr(settings)
    assert settings.schema_registry_ca_file == "/etc/ca.pem"
    assert (settings.schema_wire_format, settings.schema_required) == ("confluent", True)
    assert settings.schema_cache_s == 5.0


@pytest.mark.parametrize(
    "setting", [{"schema_wire_format": "confluent"}, {"schema_required": True}]
)
def test_schema_options_without_a_registry_are_refused(setting: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="RG_SCHEMA_REGISTRY_URL"):
        Settings(**setting)  # type: ignore[arg-type]


def test_an_empty_registry_url_turns_contracts_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_SCHEMA_REGISTRY_URL", "")
    assert Settings().schema_registry_url is None
    with pytest.raises(ValidationError, match="schema_wire_format"):
        Settings(schema_wire_format="bogus")


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ('{"k1": ["audit:write"], "sk-SUPERSECRET-123": ["audit:wrte"]}', "key #2"),
        ('{"sk-SUPERSECRET-123": "audit:write"}', "key #1"),
        ('{"sk-SUPERSECRET-123": [1]}', "key #1"),
        ('["sk-SUPERSECRET-123"]', "a JSON object"),
    ],
)
def test_an_api_key_with_a_bad_scope_is_named_by_position_never_by_value(
    monkeypatch: pytest.MonkeyPatch, keys: str, named: str
) -> None:
    monkeypatch.setenv("RG_API_KEYS", keys)
    with pytest.raises(ValidationError) as raised:
        Settings()
    message = str(raised.value)
    assert named in message
    assert "SUPERSECRET" not in message


def test_api_keys_with_known_scopes_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_API_KEYS", '{"k1": ["audit:write"], "k2": ["messages:read"]}')
    assert Settings().api_keys == {"k1": ["audit:write"], "k2": ["messages:read"]}


@pytest.mark.parametrize(
    "url", ["http://registry-user:S3cret@127.0.0.1:8081", "https://token@registry.example:443/x"]
)
def test_credentials_in_the_registry_url_are_refused_pointing_to_their_settings(url: str) -> None:
    # They would show in every message that names the registry (logs, /readyz).
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, schema_registry_url=url)
    message = str(refused.value)
    assert "RG_SCHEMA_REGISTRY_USERNAME" in message
    assert "RG_SCHEMA_REGISTRY_PASSWORD" in message


def test_unit_the_log_origin_defaults_to_the_audit_topic_and_must_be_a_key_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().log_origin == "ractogateway-kafka/ractogateway.audit"
    monkeypatch.setenv("RG_AUDIT_TOPIC", "team.audit")
    assert Settings().log_origin == "ractogateway-kafka/team.audit"
    monkeypatch.setenv("RG_AUDIT_LOG_ORIGIN", "audit.example.com/trail")
    assert Settings().log_origin == "audit.example.com/trail"
    # It names the key in every note's signature line and verifier key: no spaces, no '+'.
    for bad in ("audit example", "audit+1", "", "a\tb"):
        monkeypatch.setenv("RG_AUDIT_LOG_ORIGIN", bad)
        with pytest.raises(ValidationError, match="audit_log_origin"):
            Settings()


def test_unit_timestamp_authorities_as_a_list_or_commas_with_their_ca(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().audit_tsa_urls == []
    assert Settings().audit_tsa_interval_s == 60.0
    monkeypatch.setenv("RG_AUDIT_TSA_CA_FILE", "/etc/tsa/ca.pem")
    monkeypatch.setenv("RG_AUDIT_TSA_URLS", "http://tsa-a/, https://tsa-b:8443/tsr")
    assert Settings().audit_tsa_urls == ["http://tsa-a/", "https://tsa-b:8443/tsr"]
    monkeypatch.setenv("RG_AUDIT_TSA_URLS", '["http://tsa-a/", "https://tsa-b/"]')
    assert Settings().audit_tsa_urls == ["http://tsa-a/", "https://tsa-b/"]
    for bad, said in (
        ("ftp://tsa/", "not an http"),
        ("http://user:secret@tsa/", "no credentials"),
        ('["http://tsa/"', "not a JSON list"),
    ):
        monkeypatch.setenv("RG_AUDIT_TSA_URLS", bad)
        with pytest.raises(ValidationError, match=said) as raised:
            Settings()
        assert "secret" not in str(raised.value)
    # Authorities without their CA: a token kept unchecked could be anyone's.
    monkeypatch.delenv("RG_AUDIT_TSA_CA_FILE")
    monkeypatch.setenv("RG_AUDIT_TSA_URLS", "http://tsa/")
    with pytest.raises(ValidationError, match="needs RG_AUDIT_TSA_CA_FILE"):
        Settings()
