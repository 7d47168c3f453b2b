"""The embedded Schema Registry: Apicurio Registry with its Confluent-compatible API, run as a
child JVM for `ractogateway-kafka registry` and the test suite, the way `EmbeddedKafka` runs the
broker.

Apicurio publishes the finished application on Maven Central as one archive
(`io.apicurio:apicurio-registry-app:<version>:tar.gz:all`, ~160 MB): Maven copies it once into
the cache folder, where it is unpacked (`quarkus-run.jar` and its `lib/`). Building it from its
POMs is not possible from Central alone, so the archive it is.

It needs Java 21 or newer (the broker needs 17): `find_java_21()` takes `$JAVA_HOME` when it is
new enough, else the newest JDK under `/usr/lib/jvm/`, else `java` on PATH. Storage is in memory:
every start begins empty. Global compatibility is set to BACKWARD, Confluent's default (Apicurio's
own is NONE).

Cache layout (`$RG_REGISTRY_CACHE_DIR`, else `~/.cache/ractogateway-kafka/registry`):

    apicurio-registry-<version>/quarkus-run.jar   the unpacked application
    apicurio-registry-<version>/.complete         written last: a half-finished unpack is redone
    apicurio-registry-<version>/maven.log
"""

import atexit
import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from app.embedded import child
from app.embedded.child import exclusive, terminate
from app.embedded.distribution import DEPENDENCY_PLUGIN
from app.embedded.errors import EmbeddedKafkaError
from app.embedded.ports import LOOPBACK, ensure_port_free, free_port

logger = logging.getLogger(__name__)

# Overridable (RG_REGISTRY_VERSION, as `make` passes it): Central serves 3.3.2 too.
REGISTRY_VERSION = os.environ.get("RG_REGISTRY_VERSION", "3.3.3")
REGISTRY_CACHE_DIR_ENV = "RG_REGISTRY_CACHE_DIR"
# Where the Confluent-compatible API lives on an Apicurio server.
CCOMPAT_PATH = "/apis/ccompat/v7"
MIN_JAVA = 21
_MAVEN_TIMEOUT_S = 900
_JVM_ROOT = Path("/usr/lib/jvm")
_running: "weakref.WeakSet[EmbeddedRegistry]" = weakref.WeakSet()


class EmbeddedRegistryError(EmbeddedKafkaError):
    """The embedded registry could not be installed, started or stopped (one line to act on)."""


def default_registry_cache_dir() -> Path:
    """`$RG_REGISTRY_CACHE_DIR`, else `registry/` in the user's cache folder."""
    if explicit := os.environ.get(REGISTRY_CACHE_DIR_ENV):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ractogateway-kafka" / "registry"


class RegistryDistribution:
    """One Apicurio Registry version, unpacked under `cache_dir` on first use."""

    def __init__(self, cache_dir: Path | None = None, *, version: str = REGISTRY_VERSION) -> None:
        self.version = version
        self.root = (cache_dir or default_registry_cache_dir()).resolve() / (
            f"apicurio-registry-{version}"
        )

    @property
    def jar(self) -> Path:
        """The application's launcher jar."""
        return self.root / "quarkus-run.jar"

    def is_installed(self) -> bool:
        """True once an unpack finished completely."""
        return (self.root / ".complete").is_file()

    def ensure(self) -> Path:
        """Fetch and unpack the application unless it is there; return the launcher jar."""
        if self.is_installed():
            return self.jar
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(self.root.parent / f".{self.root.name}.lock"):
            if not self.is_installed():  # another process may have finished meanwhile
                self._download()
        return self.jar

    def _download(self) -> None:
        mvn = shutil.which("mvn")
        if mvn is None:
            raise EmbeddedRegistryError(
                "mvn not found on PATH: install Apache Maven (Debian: apt-get install maven) so "
                f"Apicurio Registry {self.version} can be downloaded"
            )
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        log = self.root / "maven.log"
        artifact = f"io.apicurio:apicurio-registry-app:{self.version}:tar.gz:all"
        with tempfile.TemporaryDirectory(dir=self.root.parent, prefix=".fetch-") as staging:
            command = [
                mvn,
                "--batch-mode",
                "--no-transfer-progress",
                f"{DEPENDENCY_PLUGIN}:copy",
                f"-Dartifact={artifact}",
                f"-DoutputDirectory={staging}",
            ]
            try:
                with log.open("w", encoding="utf-8") as out:
                    result = subprocess.run(
                        command,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        # Maven wants a project folder; an empty one will do for `copy`.
                        cwd=staging,
                        timeout=_MAVEN_TIMEOUT_S,
                        check=False,
                    )
            except subprocess.TimeoutExpired as exc:
                raise EmbeddedRegistryError(
                    f"Maven did not fetch {artifact} within {_MAVEN_TIMEOUT_S} s; see {log}"
                ) from exc
            archives = list(Path(staging).glob("*.tar.gz"))
            if result.returncode != 0 or not archives:
                raise EmbeddedRegistryError(
                    f"Maven could not fetch {artifact} (exit status {result.returncode}); see {log}"
                )
            with tarfile.open(archives[0]) as archive:
                archive.extractall(self.root, filter="data")
        if not self.jar.is_file():
            raise EmbeddedRegistryError(f"{artifact} holds no quarkus-run.jar; see {self.root}")
        (self.root / ".complete").write_text(f"{self.version}\n", encoding="utf-8")


_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def java_major(java: str) -> int | None:
    """The major version of the `java` at that path (`java -version`), None when it won't run."""
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(result.stderr + result.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # "1.8.0" is Java 8.
    return int(match.group(2) or 0) if major == 1 else major


def find_java_21(jvm_root: Path = _JVM_ROOT) -> str:
    """A `java` of version 21 or newer: `$JAVA_HOME`'s when new enough, else the newest under
    `/usr/lib/jvm/`, else the one on PATH; a clear error naming what to install otherwise."""
    candidates: list[Path] = []
    if java_home := os.environ.get("JAVA_HOME"):
        candidates.append(Path(java_home) / "bin" / "java")
    if jvm_root.is_dir():
        candidates += sorted(home / "bin" / "java" for home in jvm_root.iterdir())
    if on_path := shutil.which("java"):
        candidates.append(Path(on_path))
    seen: list[str] = []
    usable: list[tuple[int, str]] = []
    for binary in dict.fromkeys(candidates):  # once each, in order
        if not binary.is_file():
            continue
        major = java_major(str(binary))
        seen.append(f"{binary} ({major or 'unknown version'})")
        if major is not None and major >= MIN_JAVA:
            if binary == candidates[0] and os.environ.get("JAVA_HOME"):
                return str(binary)  # JAVA_HOME wins when it is new enough
            usable.append((major, str(binary)))
    if usable:
        return max(usable)[1]  # the newest
    raise EmbeddedRegistryError(
        f"the embedded Schema Registry needs Java {MIN_JAVA} or newer; found "
        + (", ".join(seen) if seen else "no java")
        + ": install a JDK 21+ (Debian: apt-get install openjdk-21-jdk-headless, or a Temurin "
        "21/25 JDK) or point JAVA_HOME at one"
    )


class EmbeddedRegistry:
    """Apicurio Registry on loopback, owned by this process (see the module docstring).

    `start()` returns once `GET <url>/subjects` answers; `url` is the Confluent-compatible API's
    base. `stop()` sends SIGTERM (Quarkus shuts down in about two seconds), then SIGKILL after
    `stop_timeout_s`. On Linux the JVM dies with the thread that started it.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        distribution: RegistryDistribution | None = None,
        heap: str = "256m",
        log_file: Path | None = None,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 20.0,
    ) -> None:
        self.port = port
        self.management_port = 0
        self.distribution = distribution or RegistryDistribution()
        self.heap = heap
        self.log_file = log_file
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The Confluent-compatible API: `http://127.0.0.1:PORT/apis/ccompat/v7`."""
        return f"http://{LOOPBACK}:{self.port}{CCOMPAT_PATH}"

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True while the JVM process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Install the application if needed, start it and wait until its API answers."""
        if self.is_running():
            return self
        java = find_java_21()
        jar = self.distribution.ensure()
        self.port = self.port or free_port()
        self.management_port = free_port()
        ensure_port_free(self.port, role="schema registry")
        if self.log_file is None:
            self.log_file = Path(tempfile.mkstemp(prefix="rg-registry-", suffix=".log")[1])
        self._out = self.log_file.open("wb")
        die_with_parent = (
            sys.platform == "linux" and threading.current_thread() is threading.main_thread()
        )
        command = [
            java,
            f"-Xmx{self.heap}",
            # A small, short-lived server: the serial collector and the C1 compiler start it in
            # about 4 s instead of 6.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dquarkus.http.host={LOOPBACK}",
            f"-Dquarkus.http.port={self.port}",
            # Its management interface listens on 9000 by default: a free port of its own.
            f"-Dquarkus.management.host={LOOPBACK}",
            f"-Dquarkus.management.port={self.management_port}",
            "-Dapicurio.rules.global.compatibility=BACKWARD",
            "-jar",
            str(jar),
        ]
        self._process = subprocess.Popen(
            command,
            cwd=jar.parent,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=child.die_with_parent if die_with_parent else None,  # noqa: PLW1509
        )
        _running.add(self)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "Schema Registry (Apicurio %s) ready at %s", self.distribution.version, self.url
        )
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process is not None else None
                raise EmbeddedRegistryError(
                    f"the Schema Registry exited with status {code} while starting: "
                    f"{self._failure_reason()}"
                )
            if _answers(f"{self.url}/subjects"):
                return
            time.sleep(0.25)
        raise EmbeddedRegistryError(
            f"the Schema Registry did not answer on {self.url} within "
            f"{self.startup_timeout_s:.0f} s; see {self.log_file}"
        )

    def _failure_reason(self) -> str:
        if self.log_file is None or not self.log_file.is_file():
            return "no output"
        lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        for line in lines:
            if "Exception" in line or "Error" in line or " ERROR " in line:
                return f"{line.strip()} (see {self.log_file})"
        return f"see {self.log_file}"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `stop_timeout_s`)."""
        process, self._process = self._process, None
        if process is not None:
            terminate(process, timeout_s=self.stop_timeout_s, name="the Schema Registry")
        _running.discard(self)
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _answers(url: str) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(url, timeout=2) as answer,  # noqa: S310 - our own loopback URL
    ):
        return bool(answer.status == 200)
    return False


@atexit.register
def _stop_all() -> None:
    for registry in list(_running):
        registry.stop()
