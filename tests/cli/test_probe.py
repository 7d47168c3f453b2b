"""`ractogateway-kafka probe`, the container health check: against real `serve` processes, a
closed port and a socket that never answers; and units for where it sends the request and how
it reads RG_HOST/RG_PORT (the same way as `Settings`, without importing it)."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli.probe import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ProbeError,
    setting,
    target,
)
from app.embedded import free_port
from app.settings import Settings
from tests.helpers.processes import run_cli
from tests.helpers.service import Launch


def probe_env(**settings: str) -> dict[str, str]:
    """The environment minus the developer's RG_* settings, plus `settings` as RG_* values."""
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith("RG_")}
    return env | {f"RG_{name.upper()}": value for name, value in settings.items()}


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


def test_live_and_ready_against_a_served_process(
    kafka_bootstrap: str, start_service: Launch, tmp_path: Path
) -> None:
    service = start_service(kafka_bootstrap, tmp_path / "service")
    service.wait_ready()
    # RG_HOST=0.0.0.0, as in the image: the probe asks 127.0.0.1 (where this service listens).
    env = probe_env(host="0.0.0.0", port=port_of(service.url))
    for check in ([], ["live"], ["ready"]):
        done = run_cli(["probe", *check], cwd=tmp_path, env=env)
        assert (done.returncode, done.stderr) == (0, ""), check


def test_live_but_not_ready_while_the_broker_is_away(start_service: Launch, tmp_path: Path) -> None:
    # A real service whose broker list points at a port nobody listens on: it serves, it is
    # not ready. RG_PORT comes from a .env file in the working folder, as `serve` reads it.
    # Readiness waits 0.5 s for the absent broker, not 2 (at start and per /readyz).
    service = start_service(f"127.0.0.1:{free_port()}", tmp_path / "service", ready_timeout_s="0.5")
    service.wait_live()
    (tmp_path / ".env").write_text(f"RG_PORT={port_of(service.url)}\n", encoding="utf-8")
    env = probe_env()
    assert run_cli(["probe", "live"], cwd=tmp_path, env=env).returncode == 0
    not_ready = run_cli(["probe", "ready", "--timeout", "5"], cwd=tmp_path, env=env)
    assert not_ready.returncode == 1
    line = not_ready.stderr.strip()
    assert line.startswith("probe ready: GET http://127.0.0.1:"), line
    assert "/readyz: 503 Service Unavailable" in line
    assert len(line.splitlines()) == 1


def test_a_closed_port_fails_with_one_clear_line(tmp_path: Path) -> None:
    port = free_port()
    done = run_cli(["probe"], cwd=tmp_path, env=probe_env(port=str(port)))
    assert done.returncode == 1
    assert done.stderr == (
        f"probe live: GET http://127.0.0.1:{port}/healthz: [Errno 111] Connection refused\n"
    )
    assert done.stdout == ""


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_service_that_does_not_answer_fails_after_the_timeout(
    silent_port: int, tmp_path: Path
) -> None:
    env = probe_env(port=str(silent_port))
    done = run_cli(["probe", "ready", "--timeout", "0.5"], cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert done.stderr == (
        f"probe ready: GET http://127.0.0.1:{silent_port}/readyz: no answer within 0.5s\n"
    )


def test_unit_usage_errors_exit_2(tmp_path: Path) -> None:
    done = run_cli(["probe", "sideways"], cwd=tmp_path, env=probe_env())
    assert done.returncode == 2
    assert "invalid choice: 'sideways'" in done.stderr


def test_unit_the_probe_imports_neither_the_web_stack_nor_the_settings() -> None:
    # It runs every few seconds next to the service: importing those costs ~0.7 s of CPU.
    code = (
        "import sys\n"
        "from app.cli import main\n"
        "main(['probe', '--timeout', '0.1'])\n"
        "heavy = {'fastapi', 'starlette', 'uvicorn', 'pydantic', 'pydantic_settings', "
        "'aiokafka', 'app.settings', 'app.main', 'app.kafka'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=probe_env(port=str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout == "[]\n", done.stderr


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("", "127.0.0.1"),
        ("::", "::1"),
        ("[::]", "::1"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "localhost"),
    ],
)
def test_unit_a_wildcard_address_is_probed_on_loopback(host: str, expected: str) -> None:
    assert target(host, "8080") == (expected, 8080)


@pytest.mark.parametrize("port", ["http", "0", "70000", ""])
def test_unit_a_port_that_is_no_port_is_named(port: str) -> None:
    with pytest.raises(ProbeError, match=f"RG_PORT='{port}' is not a port number"):
        target("127.0.0.1", port)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.upper().startswith("RG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("environment", "dotenv"),
    [
        ({}, ""),
        ({"RG_HOST": "0.0.0.0", "RG_PORT": "9000"}, ""),
        ({"rg_port": "9001"}, ""),
        ({}, "RG_HOST=::\nRG_PORT=9002\n"),
        ({}, "# a comment\nexport RG_PORT='9003'\nRG_HOST=\"0.0.0.0\"  # inline\n"),
        ({"RG_PORT": "9004"}, "RG_PORT=9005\nrg_host=127.0.0.2\n"),
    ],
)
def test_unit_host_and_port_are_read_as_settings_reads_them(
    environment: dict[str, str],
    dotenv: str,
    clean_environment: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if dotenv:
        (clean_environment / ".env").write_text(dotenv, encoding="utf-8")
    settings = Settings()
    assert setting("host", DEFAULT_HOST) == settings.host
    assert int(setting("port", str(DEFAULT_PORT))) == settings.port


def test_unit_the_defaults_are_the_settings_defaults() -> None:
    assert Settings.model_fields["host"].default == DEFAULT_HOST
    assert Settings.model_fields["port"].default == DEFAULT_PORT
