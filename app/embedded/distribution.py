"""The Apache Kafka jars: resolved once through the machine's Maven, then reused from a cache.

Maven resolves `org.apache.kafka:kafka_2.13` with its runtime dependencies (the broker's POM names
them all) plus an SLF4J binding, which the POM leaves out and without which the broker logs nothing.
Another artifact of the same release (the bench's `kafka-tools`) is resolved the same way.
"""

import os
import shutil
import subprocess
from pathlib import Path

from app.embedded.child import exclusive
from app.embedded.errors import EmbeddedKafkaError

KAFKA_VERSION = "3.9.1"
SCALA_VERSION = "2.13"
SLF4J_VERSION = "1.7.36"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
CACHE_DIR_ENV = "RG_EMBEDDED_CACHE_DIR"
_MAVEN_TIMEOUT_S = 900

_POM = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by ractogateway-kafka: resolves {artifact} and its runtime jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ractogateway-kafka.embedded</groupId>
  <artifactId>{artifact}-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>{artifact}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>{slf4j}</version>
    </dependency>
  </dependencies>
</project>
"""


def default_cache_dir() -> Path:
    """`$RG_EMBEDDED_CACHE_DIR`, else the user's cache folder (`$XDG_CACHE_HOME` or `~/.cache`)."""
    if explicit := os.environ.get(CACHE_DIR_ENV):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ractogateway-kafka"


BROKER_ARTIFACT = f"kafka_{SCALA_VERSION}"


class KafkaDistribution:
    """One Apache Kafka version's jars under `cache_dir`, downloaded on first use: the broker's
    (`kafka_2.13`) unless another `artifact` of the release is named."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        version: str = KAFKA_VERSION,
        artifact: str = BROKER_ARTIFACT,
    ) -> None:
        self.version = version
        self.artifact = artifact
        self.root = (cache_dir or default_cache_dir()).resolve() / f"{artifact}-{version}"

    @property
    def lib_dir(self) -> Path:
        """The folder holding every jar the broker needs on its class path."""
        return self.root / "lib"

    @property
    def classpath(self) -> str:
        """The JVM class path: every jar in `lib_dir` (the JVM expands the wildcard)."""
        return str(self.lib_dir / "*")

    @property
    def _marker(self) -> Path:
        return self.root / ".complete"

    def is_installed(self) -> bool:
        """True once a download finished completely (a half-finished one is redone)."""
        return self._marker.is_file()

    def ensure(self) -> Path:
        """Download the jars unless they are already there; return `lib_dir`."""
        if self.is_installed():
            return self.lib_dir
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive(self.root / ".lock"):
            # Another process may have finished the download while we waited for the lock.
            if not self.is_installed():
                self._download()
        return self.lib_dir

    def _download(self) -> None:
        mvn = shutil.which("mvn")
        if mvn is None:
            raise EmbeddedKafkaError(
                "mvn not found on PATH: install Apache Maven (Debian: apt-get install maven) "
                f"so the Apache Kafka {self.version} jars ({self.artifact}) can be downloaded"
            )
        pom = self.root / "pom.xml"
        pom.write_text(
            _POM.format(kafka=self.version, artifact=self.artifact, slf4j=SLF4J_VERSION),
            encoding="utf-8",
        )
        staging = self.root / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        log = self.root / "maven.log"
        command = [
            mvn,
            "--batch-mode",
            "--no-transfer-progress",
            "--file",
            str(pom),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        try:
            with log.open("w", encoding="utf-8") as out:
                result = subprocess.run(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=_MAVEN_TIMEOUT_S,
                    check=False,
                )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedKafkaError(
                f"Maven did not finish downloading Apache Kafka {self.version} "
                f"({self.artifact}) within {_MAVEN_TIMEOUT_S} s; see {log}"
            ) from exc
        jars = list(staging.glob("*.jar")) if staging.is_dir() else []
        if result.returncode != 0 or not any(j.name.startswith(self.artifact) for j in jars):
            raise EmbeddedKafkaError(
                f"Maven could not download Apache Kafka {self.version} ({self.artifact}) "
                f"(exit status {result.returncode}): {_first_error(log)}; full log: {log}"
            )
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        staging.rename(self.lib_dir)
        self._marker.write_text(f"{self.version}\n", encoding="utf-8")


def _first_error(log: Path) -> str:
    """The first `[ERROR]` line of a Maven log: usually the one that says what went wrong."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines:
        if line.startswith("[ERROR]"):
            return line.removeprefix("[ERROR]").strip()
    return lines[-1].strip() if lines else "no output"
