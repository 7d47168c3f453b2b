"""The service's start-up rules in app/services.py, without a broker: authentication beyond
loopback, private key files others may read, and what timestamps need."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.services import StartupError, check_key_file_mode, check_unauthenticated
from app.settings import Settings


def settings_of(**fields: object) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"host": "127.0.0.1"},
        {"host": "localhost"},
        {"host": "::1"},
        {"host": "0.0.0.0", "api_keys": {"k": ["audit:write"]}},
        {"host": "0.0.0.0", "allow_unauthenticated": True},
    ],
)
def test_unit_loopback_keys_or_the_explicit_allow_start(fields: dict[str, object]) -> None:
    check_unauthenticated(settings_of(**fields))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "recorder.example"])
def test_unit_beyond_loopback_without_keys_is_refused(host: str) -> None:
    with pytest.raises(StartupError, match=f"RG_HOST={host} .*RG_API_KEYS is empty"):
        check_unauthenticated(settings_of(host=host))


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640, 0o666])
def test_unit_a_key_file_others_may_read_is_refused_unless_allowed(
    tmp_path: Path, mode: int
) -> None:
    key = tmp_path / "k"
    key.write_bytes(b"k")
    key.chmod(mode)
    with pytest.raises(
        StartupError, match=f"RG_X {key}: (others|its group) may read it \\(mode {mode:04o}\\)"
    ):
        check_key_file_mode(key, "RG_X", allow_insecure=False)
    check_key_file_mode(key, "RG_X", allow_insecure=True)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_unit_a_key_file_only_its_owner_reads_passes(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "k"
    key.write_bytes(b"k")
    key.chmod(mode)
    check_key_file_mode(key, "RG_X", allow_insecure=False)


def test_unit_a_group_readable_file_of_another_owner_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As Kubernetes mounts a secret: owned by root, readable by the pod's fsGroup (0440), the
    # only way the service's user can read it. Here the service runs as "another user".
    key = tmp_path / "k"
    key.write_bytes(b"k")
    key.chmod(0o440)
    monkeypatch.setattr(os, "geteuid", lambda: key.stat().st_uid + 1)
    check_key_file_mode(key, "RG_X", allow_insecure=False)


def test_unit_timestamps_need_the_proof_index_and_a_readable_ca(tmp_path: Path) -> None:
    from app.main import create_app  # noqa: PLC0415

    stamping: dict[str, object] = {
        "audit_tsa_urls": ["http://127.0.0.1:9/"],
        "audit_tsa_ca_file": tmp_path / "absent.pem",
    }
    with pytest.raises(StartupError, match="RG_AUDIT_SIGNING_KEY_FILE and RG_AUDIT_PROOFS"):
        create_app(settings_of(**stamping))
    key = tmp_path / "signing.key.pem"
    key.write_text("opened at start, not here\n")
    with pytest.raises(StartupError, match=r"RG_AUDIT_TSA_CA_FILE: .*not a readable PEM"):
        create_app(settings_of(**stamping, audit_signing_key_file=key))


def test_unit_a_service_that_redacts_and_stamps_nothing_loads_neither_library() -> None:
    # phonenumbers' numbering plans, stdnum's checks and the RFC 3161 client are about 10 MB of
    # the service's memory: loaded where redaction or a timestamp authority is configured.
    probe = (
        "import sys\n"
        "from app.main import create_app\n"
        "from app.settings import Settings\n"
        "create_app(Settings(_env_file=None, kafka_bootstrap_servers=['127.0.0.1:9']))\n"
        "print(sorted({'phonenumbers', 'rfc3161_client', 'stdnum'} & set(sys.modules)))\n"
        "from app.ingest.redaction import Redactor\n"
        "Redactor('mask')\n"
        "print('phonenumbers' in sys.modules and 'stdnum' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["[]", "True"], done.stderr
