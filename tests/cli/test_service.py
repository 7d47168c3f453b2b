"""`serve` and `run` refusing to start: one line naming the setting, never a traceback, and
nothing started first (the console script as a real process; no broker is needed to refuse)."""

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.embedded import free_port
from tests.helpers.processes import run_cli

SECRET = "sk-SUPERSECRET-123"


@pytest.fixture
def env() -> dict[str, str]:
    """No RG_* of the developer's; a broker address where nothing listens."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("RG_")}
    return clean | {
        "RG_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "RG_PORT": str(free_port()),
    }


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"RG_PORT": "abc"}, "RG_PORT: Input should be a valid integer"),
        ({"RG_REDACTION": "hash"}, "RG_REDACTION=hash needs RG_REDACTION_KEY_FILE"),
        ({"RG_API_KEYS": f'{{"k1": ["audit:write"], "{SECRET}": ["audit:wrte"]}}'}, "key #2"),
        ({"RG_API_KEYS": f"{SECRET} is no JSON"}, "RG_API_KEYS: not valid JSON"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_status_2(
    tmp_path: Path, env: dict[str, str], settings: dict[str, str], named: str
) -> None:
    done = run_cli(["serve"], cwd=tmp_path, env=env | settings)
    assert done.returncode == 2, done.stderr
    line = one_line(done.stdout + done.stderr)
    assert named in line
    assert SECRET not in line


def test_a_missing_signing_key_is_one_line_and_status_3(
    tmp_path: Path, env: dict[str, str]
) -> None:
    missing = tmp_path / "absent.pem"
    done = run_cli(["serve"], cwd=tmp_path, env=env | {"RG_AUDIT_SIGNING_KEY_FILE": str(missing)})
    assert done.returncode == 3, done.stderr
    line = one_line(done.stdout + done.stderr)
    assert f"RG_AUDIT_SIGNING_KEY_FILE {missing}: cannot read it" in line


def test_a_redaction_key_others_may_read_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    key = tmp_path / "redaction.key"
    key.write_bytes(b"a key\n")
    key.chmod(0o644)
    settings = {"RG_REDACTION": "hash", "RG_REDACTION_KEY_FILE": str(key)}
    done = run_cli(["serve"], cwd=tmp_path, env=env | settings)
    assert done.returncode == 3, done.stderr
    line = one_line(done.stdout + done.stderr)
    assert f"RG_REDACTION_KEY_FILE {key}: others may read it (mode 0644)" in line
    assert "RG_ALLOW_INSECURE_KEY_FILES=true" in line


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_every_interface_without_api_keys_is_refused(
    tmp_path: Path, env: dict[str, str], host: str
) -> None:
    done = run_cli(["serve"], cwd=tmp_path, env=env | {"RG_HOST": host})
    assert done.returncode == 3, done.stderr
    line = one_line(done.stdout + done.stderr)
    assert f"RG_HOST={host} listens beyond this machine and RG_API_KEYS is empty" in line
    assert "RG_ALLOW_UNAUTHENTICATED=true" in line


def test_run_with_the_api_port_taken_names_rg_port_and_starts_no_broker(
    tmp_path: Path, env: dict[str, str], taken_port: int
) -> None:
    data_dir = tmp_path / "kafka"
    done = run_cli(
        ["run", "--port", str(free_port()), "--data-dir", str(data_dir)],
        cwd=tmp_path,
        env={k: v for k, v in env.items() if k != "RG_KAFKA_BOOTSTRAP_SERVERS"}
        | {"RG_PORT": str(taken_port)},
    )
    assert done.returncode == 3, done.stderr
    line = one_line(done.stdout + done.stderr)
    assert f"RG_PORT={taken_port}: the API cannot listen on 127.0.0.1:{taken_port}" in line
    assert "choose another RG_PORT" in line
    assert not data_dir.exists()


def test_serve_with_the_api_port_taken_names_rg_port(
    tmp_path: Path, env: dict[str, str], taken_port: int
) -> None:
    done = run_cli(["serve"], cwd=tmp_path, env=env | {"RG_PORT": str(taken_port)})
    assert done.returncode == 3, done.stderr
    assert f"RG_PORT={taken_port}" in one_line(done.stdout + done.stderr)
