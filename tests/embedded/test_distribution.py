"""Resolving the Apache Kafka jars. The unit tests put a fake `mvn` on PATH; one test checks the
real download the session already made."""

import os
import stat
from pathlib import Path

import pytest

from app.embedded import EmbeddedKafkaError, KafkaDistribution
from app.embedded.distribution import default_cache_dir


def fake_mvn(bin_dir: Path, script: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    mvn = bin_dir / "mvn"
    mvn.write_text("#!/bin/sh\n" + script)
    mvn.chmod(mvn.stat().st_mode | stat.S_IEXEC)
    return mvn


# Writes a kafka jar into the -DoutputDirectory it is given and counts its calls.
COPYING_MVN = """
echo call >> "$(dirname "$0")/calls"
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";; esac
done
mkdir -p "$out" && touch "$out/kafka_2.13-9.9.9.jar"
"""


def test_unit_download_runs_once_then_reuses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mvn(tmp_path / "bin", COPYING_MVN)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    distribution = KafkaDistribution(tmp_path / "cache")

    lib = distribution.ensure()
    assert (lib / "kafka_2.13-9.9.9.jar").is_file()
    assert distribution.is_installed()
    KafkaDistribution(tmp_path / "cache").ensure()

    assert (tmp_path / "bin" / "calls").read_text().count("call") == 1
    assert distribution.classpath.endswith("/lib/*")


def test_unit_failed_download_names_mavens_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mvn(
        tmp_path / "bin",
        'echo "[INFO] Scanning"\necho "[ERROR] Could not resolve org.apache.kafka:kafka_2.13"\n'
        "exit 1\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    distribution = KafkaDistribution(tmp_path / "cache")

    with pytest.raises(EmbeddedKafkaError, match=r"Could not resolve org\.apache\.kafka") as caught:
        distribution.ensure()
    assert "\n" not in str(caught.value)
    assert not distribution.is_installed()


def test_unit_missing_mvn_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmbeddedKafkaError, match="mvn not found on PATH"):
        KafkaDistribution(tmp_path / "cache").ensure()


def test_unit_cache_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RG_EMBEDDED_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("RG_EMBEDDED_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ractogateway-kafka"


def test_real_download_holds_the_broker_and_a_logging_binding(
    kafka_distribution: KafkaDistribution,
) -> None:
    names = {jar.name for jar in kafka_distribution.lib_dir.glob("*.jar")}
    assert f"kafka_2.13-{kafka_distribution.version}.jar" in names
    assert f"kafka-clients-{kafka_distribution.version}.jar" in names
    assert any(name.startswith("slf4j-reload4j") for name in names)
