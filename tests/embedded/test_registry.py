"""The embedded Schema Registry: Java 21+ found, the real server started by the console script,
its Confluent-compatible API with BACKWARD compatibility, stopped cleanly by SIGTERM."""

import os
import signal
import stat
from pathlib import Path

import httpx
import pytest

from app.embedded.registry import (
    REGISTRY_CACHE_DIR_ENV,
    EmbeddedRegistryError,
    RegistryDistribution,
    find_java_21,
)
from tests.helpers.processes import Running


def _fake_java(home: Path, version: str) -> Path:
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-01-01' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return java


def test_unit_find_java_21_takes_the_newest_jdk_of_21_or_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_java(tmp_path / "jdk-17", "17.0.15")
    newest = _fake_java(tmp_path / "jdk-25", "25.0.1")
    _fake_java(tmp_path / "jdk-21", "21.0.4")
    old_home = tmp_path / "old-home"
    _fake_java(old_home, "17.0.2")
    monkeypatch.setenv("JAVA_HOME", str(old_home))  # too old: passed over
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_java_21(tmp_path) == str(newest)


def test_unit_find_java_21_names_what_it_found_and_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_java(tmp_path / "jdk-17", "17.0.15")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EmbeddedRegistryError) as raised:
        find_java_21(tmp_path)
    message = str(raised.value)
    assert "Java 21 or newer" in message
    assert "(17)" in message
    assert "JAVA_HOME" in message


def test_session_registry_answers_with_backward_compatibility(schema_registry_url: str) -> None:
    assert httpx.get(f"{schema_registry_url}/subjects", timeout=10).json() is not None
    config = httpx.get(f"{schema_registry_url}/config", timeout=10).json()
    assert config["compatibilityLevel"] == "BACKWARD"


@pytest.mark.broker  # starts a JVM of its own: as slow as the broker, so not in the broker-free set
def test_registry_command_prints_its_url_and_stops_on_sigterm(
    tmp_path: Path, registry_distribution: RegistryDistribution
) -> None:
    cache = registry_distribution.root.parent
    env = {**os.environ, REGISTRY_CACHE_DIR_ENV: str(cache)}
    log = tmp_path / "registry.log"
    process = Running(["registry", "--log-file", str(log)], cwd=tmp_path, env=env)
    try:
        line = process.wait_for_line("url=", timeout_s=120)
        url = line.removeprefix("url=")
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/apis/ccompat/v7")
        registered = httpx.post(
            f"{url}/subjects/probe-value/versions",
            json={
                "schemaType": "JSON",
                "schema": '{"$schema": "http://json-schema.org/draft-07/schema#", '
                '"type": "object", "properties": {"a": {"type": "string"}}}',
            },
            timeout=10,
        )
        assert registered.status_code == 200, registered.text
        jvm = _jvm_pid(url)
        assert process.stop(signal.SIGTERM, timeout_s=30) == 0
    finally:
        process.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/subjects", timeout=2)
    if jvm is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(jvm, 0)


def _jvm_pid(url: str) -> int | None:
    """The pid of the java process serving `url` (its command line names the port)."""
    port = url.split(":")[2].split("/", maxsplit=1)[0]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"-Dquarkus.http.port={port}".encode() in command:
            return int(entry.name)
    return None
