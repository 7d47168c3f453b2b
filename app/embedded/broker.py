"""An Apache Kafka node (KRaft, broker and controller in one JVM) run as a child process: alone,
or one node of an `EmbeddedKafkaCluster` (app/embedded/cluster.py).

Layout of its data folder, kept across restarts:

    DATA_DIR/server.properties   rewritten on every start (ports may change)
    DATA_DIR/log4j.properties
    DATA_DIR/broker.log          the broker's own log, size-bounded
    DATA_DIR/jvm.log             the JVM's stdout/stderr of the last start (early crashes)
    DATA_DIR/kafka-logs/         Kafka's `log.dirs`: formatted once, then reused
"""

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from app.embedded import child
from app.embedded.child import terminate
from app.embedded.config import NODE_ID, log4j_properties, new_cluster_id, server_properties
from app.embedded.distribution import KafkaDistribution
from app.embedded.errors import EmbeddedKafkaError
from app.embedded.ports import LOOPBACK, ensure_port_free, free_port

logger = logging.getLogger(__name__)

_running: "weakref.WeakSet[EmbeddedKafka]" = weakref.WeakSet()


def find_java() -> str:
    """The `java` of `$JAVA_HOME`, else the first on PATH."""
    if java_home := os.environ.get("JAVA_HOME"):
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    java = shutil.which("java")
    if java is None:
        raise EmbeddedKafkaError(
            "java not found on PATH or in JAVA_HOME: install a JDK 17 or newer "
            "(Debian: apt-get install openjdk-17-jdk-headless) to run the embedded Apache Kafka"
        )
    return java


class EmbeddedKafka:
    """A real Apache Kafka broker on loopback, owned by this process.

    `start()` returns once a client's metadata request lists the broker; `stop()` sends SIGTERM
    (Kafka's clean shutdown), then SIGKILL after `stop_timeout_s`. A broker still running when the
    interpreter exits is stopped by an `atexit` hook, and on Linux the JVM is also told to die with
    the thread that started it, so not even a SIGKILLed parent leaves a java process behind.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        controller_port: int = 0,
        distribution: KafkaDistribution | None = None,
        heap: str = "512m",
        overrides: Mapping[str, str] | None = None,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 30.0,
        node_id: int = NODE_ID,
        voters: Mapping[int, int] | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.controller_port = controller_port
        # A cluster's node: its id, every node's controller port, and the id all of them are
        # formatted with (a node formatted with another id is refused by the quorum).
        self.node_id = node_id
        self.voters = dict(voters or {})
        self.cluster_id = cluster_id
        self.distribution = distribution or KafkaDistribution()
        self.heap = heap
        self.overrides = dict(overrides or {})
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._jvm_out: IO[bytes] | None = None
        self._log_offset = 0

    @property
    def bootstrap_servers(self) -> str:
        """`127.0.0.1:PORT`, the address clients connect to."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_dir(self) -> Path:
        """Kafka's `log.dirs`: where the records are stored."""
        return self.data_dir / "kafka-logs"

    @property
    def log_file(self) -> Path:
        """The broker's own log."""
        return self.data_dir / "broker.log"

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True while the JVM process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Install the jars if needed, start the JVM and wait until the broker serves clients."""
        if self.is_running():
            return self
        self.launch(self.prepare())
        self.wait_until_ready()
        return self

    def prepare(self) -> Path:
        """Everything before the JVM starts: ports checked, config written, storage formatted;
        the config's path. Safe in any thread (a cluster prepares its nodes in parallel)."""
        java = find_java()
        self.distribution.ensure()
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        ensure_port_free(self.port, role="broker")
        ensure_port_free(self.controller_port, role="controller")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self._format_storage(java, config)
        return config

    def launch(self, config: Path) -> None:
        """Start the JVM on a `prepare()`d config, without waiting for it; call it from the
        thread that will outlive the broker (the main thread: see `_launch`)."""
        self._launch(find_java(), config)

    def wait_until_ready(self) -> None:
        """Block until the broker serves clients; stop it and raise `EmbeddedKafkaError` when
        it exits or is not ready within `startup_timeout_s`."""
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        logger.info("Apache Kafka ready at %s (data in %s)", self.bootstrap_servers, self.data_dir)

    def kill(self) -> None:
        """SIGKILL the JVM: no shutdown hook, no flush, as when a machine dies. `start()` brings
        it back on the same ports and data."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()
            _running.discard(self)
        if self._jvm_out is not None:
            self._jvm_out.close()
            self._jvm_out = None

    def stop(self) -> None:
        """Shut the broker down cleanly; kill it if it has not exited after `stop_timeout_s`."""
        process, self._process = self._process, None
        if process is not None:
            terminate(process, timeout_s=self.stop_timeout_s, name="Apache Kafka")
            _running.discard(self)
        if self._jvm_out is not None:
            self._jvm_out.close()
            self._jvm_out = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_config(self) -> Path:
        config = self.data_dir / "server.properties"
        config.write_text(
            server_properties(
                host=LOOPBACK,
                port=self.port,
                controller_port=self.controller_port,
                log_dir=self.log_dir,
                node_id=self.node_id,
                voters=self.voters,
                overrides=self.overrides,
            ),
            encoding="utf-8",
        )
        (self.data_dir / "log4j.properties").write_text(
            log4j_properties(self.log_file), encoding="utf-8"
        )
        return config

    def _jvm_command(self, java: str, main_class: str, *args: str) -> list[str]:
        return [
            java,
            f"-Xms{min(256, _megabytes(self.heap))}m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            self.distribution.classpath,
            main_class,
            *args,
        ]

    def _format_storage(self, java: str, config: Path) -> None:
        # KRaft refuses to start on an unformatted folder; formatting again would be refused too,
        # so a data folder that survived a restart is left exactly as it is.
        if (self.log_dir / "meta.properties").is_file():
            return
        command = self._jvm_command(
            java,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id or new_cluster_id(),
            "-c",
            str(config),
        )
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            output = (result.stderr + result.stdout).splitlines()
            raise EmbeddedKafkaError(
                f"formatting Kafka storage in {self.log_dir} failed: "
                f"{_first_error(output) or _last_lines(output, result.returncode)}"
            )

    def _launch(self, java: str, config: Path) -> None:
        self._log_offset = self.log_file.stat().st_size if self.log_file.is_file() else 0
        self._jvm_out = (self.data_dir / "jvm.log").open("wb")
        die_with_parent = (
            sys.platform == "linux" and threading.current_thread() is threading.main_thread()
        )
        self._process = subprocess.Popen(
            self._jvm_command(java, "kafka.Kafka", str(config)),
            stdin=subprocess.DEVNULL,
            stdout=self._jvm_out,
            stderr=subprocess.STDOUT,
            # Its own process group: a Ctrl-C in the terminal reaches us, and we decide the order
            # of shutdown (service first, then the broker).
            process_group=0,
            # PDEATHSIG fires when the *thread* that forked exits, so only the main thread uses it.
            preexec_fn=child.die_with_parent if die_with_parent else None,  # noqa: PLW1509
        )
        _running.add(self)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process is not None else None
                reason = self._failure_reason()
                raise EmbeddedKafkaError(
                    f"Apache Kafka exited with status {code} while starting: {reason}"
                )
            if _accepts_connections(self.port) and _serves_metadata(self.bootstrap_servers):
                return
            time.sleep(0.2)
        raise EmbeddedKafkaError(
            f"Apache Kafka did not become ready on {self.bootstrap_servers} within "
            f"{self.startup_timeout_s:.0f} s; see {self.log_file}"
        )

    def _failure_reason(self) -> str:
        for log, offset in ((self.log_file, self._log_offset), (self.data_dir / "jvm.log", 0)):
            if log.is_file():
                with log.open("rb") as stream:
                    # Only what this start wrote: the log keeps earlier runs' errors too.
                    stream.seek(offset if offset <= log.stat().st_size else 0)
                    lines = stream.read().decode("utf-8", errors="replace").splitlines()
                if error := _first_error(lines):
                    return f"{error} (see {log})"
        return f"no error logged (see {self.log_file})"


_EXCEPTION = re.compile(r'^(?:Exception in thread "[^"]*" )?[\w.$]+(?:Exception|Error): .+')


def _first_error(lines: list[str]) -> str | None:
    """The first exception with its message, else the first ERROR line, of a JVM's output."""
    for line in lines:
        if _EXCEPTION.match(line):
            return line.strip()
    return next((line.strip() for line in lines if " ERROR " in line or " FATAL " in line), None)


def _last_lines(lines: list[str], status: int) -> str:
    """The exit status and the tail of the output, when no line names the error."""
    tail = " | ".join(line.strip() for line in lines[-3:] if line.strip())
    return f"exit status {status}" + (f": {tail}" if tail else " (no output)")


def _megabytes(size: str) -> int:
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    suffix = size[-1].lower()
    return int(float(size[:-1]) * units[suffix]) if suffix in units else int(size) // (1 << 20)


def _accepts_connections(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
        return True
    return False


def _serves_metadata(bootstrap_servers: str) -> bool:
    """A real client request: the broker is ready once its metadata lists a live broker."""
    return live_brokers(bootstrap_servers) > 0


def live_brokers(bootstrap_servers: str) -> int:
    """How many brokers a metadata request to `bootstrap_servers` lists (0: no answer)."""

    # Imported here, not at the top: the console script imports this package to build its
    # parser, and `--help` need not pay for the Kafka client.
    from aiokafka import AIOKafkaClient  # noqa: PLC0415 - see above

    async def probe() -> int:
        client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
        try:
            await client.bootstrap()
            return len(client.cluster.brokers())
        except Exception:
            return 0
        finally:
            await client.close()

    # A thread of its own: the caller may already be inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, probe()).result()


@atexit.register
def _stop_all() -> None:
    for broker in list(_running):
        broker.stop()
