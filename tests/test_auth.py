"""API keys and scopes (no broker involved)."""

import pytest

from app.auth import ApiKeys, is_loopback
from app.settings import Settings


def test_unit_keys_map_to_their_scopes_and_unknown_keys_to_none() -> None:
    keys = ApiKeys({"k-one": ["audit:write"], "k-two": ["audit:write", "messages:read"]})
    assert keys.enabled
    assert keys.scopes_of("k-one") == frozenset({"audit:write"})
    assert keys.scopes_of("k-two") == frozenset({"audit:write", "messages:read"})
    assert keys.scopes_of("k-on") is None
    assert keys.scopes_of("") is None
    assert not ApiKeys({}).enabled
    assert not ApiKeys(None).enabled


def test_unit_keys_are_not_kept_in_clear() -> None:
    keys = ApiKeys({"rg-test-secret-k1": ["audit:write"]})
    assert "rg-test-secret-k1" not in repr(vars(keys))


def test_unit_rg_api_keys_is_json_with_known_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_API_KEYS", '{"rg-test-secret-k1": ["audit:write", "messages:read"]}')
    settings = Settings(_env_file=None)
    assert settings.api_keys == {"rg-test-secret-k1": ["audit:write", "messages:read"]}
    assert "rg-test-secret-k1" not in repr(settings)
    monkeypatch.setenv("RG_API_KEYS", '{"k": ["audit:admin"]}')
    with pytest.raises(ValueError, match="api_keys"):
        Settings(_env_file=None)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("example.internal", False),
    ],
)
def test_unit_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
