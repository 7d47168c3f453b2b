"""Keys: generating a pair, loading it, the derived id, retired keys, clear errors."""

import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from pydantic import ValidationError

from app.connection import producer_config
from app.integrity.checkpointer import Checkpoints
from app.integrity.keys import (
    SigningKeyError,
    derived_key_id,
    generate,
    load_public_key,
    load_signing_key,
    public_keys,
)
from app.kafka import KafkaProducerClient
from app.settings import Settings


def test_generate_writes_a_private_key_only_its_owner_reads_and_its_public_key(
    tmp_path: Path,
) -> None:
    key_id, private, public = generate(tmp_path / "keys")
    assert private.name == f"{key_id}.key.pem"
    assert public.name == f"{key_id}.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signing = load_signing_key(private)
    assert signing.key_id == key_id == derived_key_id(load_public_key(public))
    assert len(key_id) == 16
    assert load_signing_key(private, "chosen").key_id == "chosen"
    with pytest.raises(FileExistsError):
        generate(tmp_path / "keys", key_id)


def test_public_keys_serve_the_current_one_first_then_the_retired(tmp_path: Path) -> None:
    _, _old_private, old_public = generate(tmp_path / "old", "2025-key")
    retired = tmp_path / "retired"
    retired.mkdir()
    (retired / "2025-key.pem").write_bytes(old_public.read_bytes())
    _, private, _ = generate(tmp_path / "new", "2026-key")
    keys = public_keys(load_signing_key(private, "2026-key"), retired)
    assert [(k.key_id, k.current) for k in keys] == [("2026-key", True), ("2025-key", False)]
    assert keys[1].pem == old_public.read_text()


def test_bad_key_files_are_errors_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(SigningKeyError, match=str(missing)):
        load_signing_key(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    garbage.chmod(0o600)
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM"):
        load_signing_key(garbage)
    ec = tmp_path / "ec.pem"
    ec.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ec.chmod(0o600)
    with pytest.raises(SigningKeyError, match="not an Ed25519 key"):
        load_signing_key(ec)


def test_unit_the_signing_settings_and_their_defaults() -> None:
    settings = Settings(_env_file=None, audit_topic="trail")
    assert settings.audit_signing_key_file is None
    assert settings.audit_checkpoint_s == 1.0
    assert settings.checkpoints_topic == "trail.checkpoints"
    assert Settings(_env_file=None, audit_checkpoints_topic="cps").checkpoints_topic == "cps"
    with pytest.raises(ValidationError):
        Settings(_env_file=None, audit_key_id="a/b")
    with pytest.raises(ValidationError):
        Settings(_env_file=None, audit_checkpoint_s=0)


def test_a_private_key_others_can_read_is_refused_unless_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, private, _ = generate(tmp_path / "keys")
    private.chmod(0o644)
    with pytest.raises(SigningKeyError) as refused:
        load_signing_key(private)
    message = str(refused.value)
    assert str(private) in message
    assert "0644" in message
    assert "RG_ALLOW_INSECURE_KEY_FILES" in message
    with caplog.at_level(logging.WARNING, logger="app.integrity.keys"):
        load_signing_key(private, allow_insecure=True)
    (line,) = [r.getMessage() for r in caplog.records]
    assert str(private) in line
    assert "0644" in line
    # The service's own setting reaches the check.
    settings = Settings(_env_file=None, audit_signing_key_file=private)
    with pytest.raises(SigningKeyError):
        unstarted_checkpoints(settings).open()
    allowed = settings.model_copy(update={"allow_insecure_key_files": True})
    unstarted_checkpoints(allowed).open()


def test_a_private_key_its_group_can_read_is_refused_when_it_is_the_users_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, private, _ = generate(tmp_path / "keys")
    private.chmod(0o440)
    with pytest.raises(SigningKeyError, match="its group may read it \\(mode 0440\\)"):
        load_signing_key(private)
    # A Kubernetes secret is mounted owned by root, 0440 for the pod's fsGroup (the chart does
    # so): the only way the service's user reads it, so it is taken. Here the service runs as
    # "another user".
    monkeypatch.setattr(os, "geteuid", lambda: private.stat().st_uid + 1)
    load_signing_key(private)


def unstarted_checkpoints(settings: Settings) -> Checkpoints:
    """The service's signing side, never started (no broker)."""
    return Checkpoints(settings, KafkaProducerClient(config=producer_config(settings)))


def test_a_retired_key_is_valid_until_the_time_beside_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    retired = tmp_path / "retired"
    retired.mkdir()
    for key_id in ("a-key", "b-key"):
        _, _, public = generate(tmp_path / key_id, key_id)
        (retired / f"{key_id}.pem").write_bytes(public.read_bytes())
    (retired / "a-key.until").write_text("2026-06-30T12:00:00+02:00\n")
    with caplog.at_level(logging.WARNING, logger="app.integrity.keys"):
        keys = public_keys(None, retired)
    assert [(k.key_id, k.until) for k in keys] == [
        ("a-key", datetime(2026, 6, 30, 10, tzinfo=UTC)),
        ("b-key", None),
    ]
    (line,) = [r.getMessage() for r in caplog.records]
    assert "'b-key' has no end of validity" in line
    assert str(retired / "b-key.until") in line
    (retired / "b-key.until").write_text("last summer")
    with pytest.raises(SigningKeyError, match=r"b-key\.until: not an RFC 3339 time"):
        public_keys(None, retired)
