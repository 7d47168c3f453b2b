"""The console script: --help, and the broker, serve and run commands as real processes."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import __version__
from app.cli import build_parser, main
from app.embedded import KafkaDistribution, free_port
from app.kafka import (
    KafkaConsumerClient,
    KafkaConsumerConfig,
    KafkaProducerClient,
    KafkaProducerConfig,
)
from tests.helpers.broker import java_pids_using
from tests.helpers.kafka import AUDIT_TOPIC_CONFIGS, read_all
from tests.helpers.processes import SCRIPT, Running, run_cli, wait_http
from tests.helpers.service import LiveService


@pytest.fixture
def cli_env(kafka_distribution: KafkaDistribution) -> dict[str, str]:
    """The environment minus any RG_* setting, with the session's jar cache."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RG_")}
    env["RG_EMBEDDED_CACHE_DIR"] = str(kafka_distribution.root.parent)
    return env


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for proc in started:
        proc.close()


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["broker"], ["run"], ["process"], ["tail"], ["topics"], ["topics", "check"]],
)
def test_unit_help_explains_every_command(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "usage: ractogateway-kafka" in text
    assert len(text.splitlines()) > 4


def test_unit_version_prints_the_packages_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"ractogateway-kafka {__version__}\n"


# What a command loads when it runs, never to build the parser: ~1 s of CPU at every start of the
# console script (app/cli/__init__.py). Speed is measured, not asserted: this pins the cause.
HEAVY_MODULES = {
    "aiokafka",
    "cryptography",
    "fastapi",
    "httpx",
    "orjson",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "starlette",
    "uvicorn",
    "app.api",
    "app.kafka",
    "app.main",
    "app.services",
    "app.settings",
}


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["verify", "--help"],
        ["export", "--help"],
        ["run", "--help"],
        ["keys", "generate"],  # a usage error: --out is required
    ],
)
def test_unit_help_version_and_usage_errors_import_no_heavy_module(argv: list[str]) -> None:
    code = (
        "import contextlib, io, sys\n"
        "from app.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(set({sorted(HEAVY_MODULES)!r}) & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout == "[]\n", done.stdout + done.stderr


def test_unit_commands_are_listed() -> None:
    help_text = build_parser().format_help()
    for command in ("serve", "broker", "run", "process", "tail", "topics"):
        assert command in help_text


def test_broker_prints_bootstrap_and_stops_cleanly_on_sigterm(
    tmp_path: Path, cli_env: dict[str, str], running: list[Running]
) -> None:
    port, data_dir = free_port(), tmp_path / "data"
    broker = Running(
        ["broker", "--port", str(port), "--data-dir", str(data_dir)], cwd=tmp_path, env=cli_env
    )
    running.append(broker)
    assert broker.wait_for_line("bootstrap=") == f"bootstrap=127.0.0.1:{port}"
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    assert java_pids_using(data_dir)

    assert broker.stop(signal.SIGTERM) == 0
    assert java_pids_using(data_dir) == []
    assert (data_dir / "kafka-logs" / "meta.properties").is_file()


def test_a_killed_broker_command_takes_its_java_process_with_it(
    tmp_path: Path, cli_env: dict[str, str], running: list[Running]
) -> None:
    data_dir = tmp_path / "data"
    broker = Running(
        ["broker", "--port", str(free_port()), "--data-dir", str(data_dir)],
        cwd=tmp_path,
        env=cli_env,
    )
    running.append(broker)
    broker.wait_for_line("bootstrap=")
    assert java_pids_using(data_dir)

    broker.stop(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while java_pids_using(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert java_pids_using(data_dir) == []


def test_broker_on_a_taken_port_exits_with_one_line_naming_it(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_cli(
            ["broker", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            cwd=tmp_path,
            env=cli_env,
        )
    assert result.returncode == 2
    assert f"port {port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_answers_on_rg_host_and_port(
    tmp_path: Path, cli_env: dict[str, str], kafka_bootstrap: str, running: list[Running]
) -> None:
    http_port = free_port()
    env = cli_env | {"RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "RG_PORT": str(http_port)}
    service = Running(["serve"], cwd=tmp_path, env=env)
    running.append(service)
    assert wait_http(f"http://127.0.0.1:{http_port}/readyz").json() == {"status": "ready"}
    assert service.stop(signal.SIGTERM) == 0


def test_serve_keeps_an_idle_connection_open_past_the_usual_client_expiry(
    live_service: LiveService,
) -> None:
    # Clients pool idle connections for about 5 s; were the service to close them at the same
    # age, a request sent on one just then would be lost (seen as ReadError under load).
    url = httpx.URL(live_service.url)
    with socket.create_connection((url.host, url.port), timeout=10) as connection:
        reader = connection.makefile("rb")
        for attempt in range(2):
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: rg\r\n\r\n")
            status = reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), (attempt, status)
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            if attempt == 0:
                time.sleep(6)


def test_serve_on_a_spool_folder_in_use_exits_3_naming_it(
    tmp_path: Path, cli_env: dict[str, str], kafka_bootstrap: str, running: list[Running]
) -> None:
    spool = tmp_path / "spool"
    first_port, second_port = free_port(), free_port()
    env = cli_env | {"RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "RG_SPOOL_DIR": str(spool)}
    first = Running(["serve"], cwd=tmp_path, env=env | {"RG_PORT": str(first_port)})
    running.append(first)
    wait_http(f"http://127.0.0.1:{first_port}/readyz")
    second = subprocess.run(
        [SCRIPT, "serve"],
        cwd=tmp_path,
        env=env | {"RG_PORT": str(second_port)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 3  # uvicorn's status for a failed startup
    assert f"spool folder {spool} is in use by another process" in second.stdout + second.stderr
    assert first.stop(signal.SIGTERM) == 0


def test_run_starts_the_embedded_broker_then_the_api_and_stops_both(
    tmp_path: Path, cli_env: dict[str, str], running: list[Running]
) -> None:
    http_port, data_dir = free_port(), tmp_path / "kafka-data"
    env = cli_env | {"RG_PORT": str(http_port)}
    args = ["run", "--port", str(free_port()), "--data-dir", str(data_dir)]
    service = Running(args, cwd=tmp_path, env=env)
    running.append(service)
    wait_http(f"http://127.0.0.1:{http_port}/readyz")
    assert java_pids_using(data_dir)

    assert service.stop(signal.SIGTERM) == 0
    assert java_pids_using(data_dir) == []
    assert (data_dir / "kafka-logs" / "meta.properties").is_file()
    assert "stopping Apache Kafka" in service.output()


HANDLER_MODULE = """
import os
import pathlib
import time


def handle(batch):
    if os.environ.get("CRASH_IN_BATCH") == "1":
        pathlib.Path(os.environ["MARKER"]).write_text("inside the batch")
        time.sleep(120)  # killed here, before anything is published or committed
    return [f"out-{message.value}" for message in batch]
"""


async def test_process_reprocesses_a_batch_interrupted_by_a_crash_and_stops_on_sigterm(
    tmp_path: Path,
    cli_env: dict[str, str],
    kafka_bootstrap: str,
    producer: KafkaProducerClient,
    topic: str,
    running: list[Running],
) -> None:
    (tmp_path / "crashy_handler.py").write_text(HANDLER_MODULE)
    output, group, marker = f"{topic}-out", f"group-{uuid.uuid4().hex}", tmp_path / "marker"
    for i in range(5):
        await producer.publish(topic, f"r{i}", key="k")
    env = cli_env | {"RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MARKER": str(marker)}
    args = ["process", "--handler", "crashy_handler:handle", "--input", topic]
    args += ["--output", output, "--group", group]

    crashing = Running(args, cwd=tmp_path, env=env | {"CRASH_IN_BATCH": "1"})
    running.append(crashing)
    for _ in range(1200):
        if marker.exists():
            break
        await asyncio.sleep(0.1)
    assert marker.exists(), crashing.output()
    crashing.stop(signal.SIGKILL)

    restarted = Running(args, cwd=tmp_path, env=env)
    running.append(restarted)
    outputs = await read_all(kafka_bootstrap, output, 5, timeout_s=120)
    assert sorted(m.value for m in outputs) == [f"out-r{i}" for i in range(5)]
    assert restarted.stop(signal.SIGTERM) == 0
    assert "offsets committed" in restarted.output()

    # Committed on the way out: the group has nothing left.
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic], bootstrap_servers=kafka_bootstrap, group_id=group
        )
    )
    async with consumer:
        assert await consumer.poll(timeout_ms=2000) == []


def test_process_with_a_bad_handler_says_so_in_one_line(
    tmp_path: Path, cli_env: dict[str, str], kafka_bootstrap: str
) -> None:
    result = run_cli(
        ["process", "--handler", "no_such_module:handle", "--input", "t"],
        cwd=tmp_path,
        env=cli_env | {"RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )
    assert result.returncode == 2
    assert "cannot import 'no_such_module'" in result.stderr
    assert "Traceback" not in result.stderr


async def test_tail_prints_records_as_json_lines(
    tmp_path: Path,
    cli_env: dict[str, str],
    kafka_bootstrap: str,
    producer: KafkaProducerClient,
    topic: str,
) -> None:
    await producer.publish(topic, {"n": 1}, key="a", headers={"h": "v"})
    await producer.publish(topic, b"\xff", key="b")
    result = await asyncio.to_thread(
        run_cli,
        ["tail", topic, "--from-beginning", "--json", "--max-messages", "2"],
        cwd=tmp_path,
        env=cli_env | {"RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_key = {line["key"]: line for line in lines}
    assert by_key["a"]["value"] == {"n": 1}
    assert by_key["a"]["headers"]["h"] == "v"
    assert by_key["b"]["value"] == "base64:/w=="
    assert by_key["a"]["topic"] == topic


async def test_topics_check_exits_0_on_a_compliant_topic_and_1_on_a_seven_day_one(
    tmp_path: Path, cli_env: dict[str, str], kafka_bootstrap: str, create_topic: Any
) -> None:
    compliant = await create_topic(partitions=2, configs=AUDIT_TOPIC_CONFIGS)
    seven_days = await create_topic(partitions=2, configs={"retention.ms": "604800000"})
    env = cli_env | {"RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    good, bad = [
        await asyncio.to_thread(
            run_cli, ["topics", "check"], cwd=tmp_path, env=env | {"RG_AUDIT_TOPIC": name}
        )
        for name in (compliant, seven_days)
    ]
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"audit topic {compliant!r} found: 2 partitions" in good.stdout
    assert "compliant" in good.stdout
    assert bad.returncode == 1, bad.stdout + bad.stderr
    # Six calendar months can be 184 days: the floor's default.
    assert "noncompliant: retention.ms=604800000, required >= 15897600000" in bad.stdout
    assert "records are deleted after 7 days" in bad.stdout
    assert "not found: none are written without RG_AUDIT_SIGNING_KEY_FILE" in good.stdout


async def test_topics_check_checks_the_checkpoints_topic_too(
    tmp_path: Path, cli_env: dict[str, str], kafka_bootstrap: str, create_topic: Any
) -> None:
    audit = await create_topic(partitions=2, configs=AUDIT_TOPIC_CONFIGS)
    seven_days = await create_topic(partitions=1, configs={"retention.ms": "604800000"})
    env = cli_env | {
        "RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RG_AUDIT_TOPIC": audit,
        "RG_AUDIT_CHECKPOINTS_TOPIC": seven_days,
    }
    result = await asyncio.to_thread(run_cli, ["topics", "check"], cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"audit topic {audit!r} found: 2 partitions" in result.stdout
    assert f"checkpoints topic {seven_days!r} found: 1 partitions" in result.stdout
    assert "noncompliant: retention.ms=604800000" in result.stdout


async def test_topics_check_exits_2_when_kafka_does_not_answer(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    env = cli_env | {"RG_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    result = await asyncio.to_thread(run_cli, ["topics", "check"], cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "does not answer" in result.stderr


async def test_topics_create_creates_the_audit_topic_as_the_service_would(
    tmp_path: Path, cli_env: dict[str, str], kafka_bootstrap: str, topic: str
) -> None:
    env = cli_env | {"RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "RG_AUDIT_TOPIC": topic}
    missing = await asyncio.to_thread(run_cli, ["topics", "check"], cwd=tmp_path, env=env)
    created = await asyncio.to_thread(
        run_cli, ["topics", "create", "--topic", topic], cwd=tmp_path, env=env
    )
    assert missing.returncode == 1
    assert "topic=missing" in missing.stdout
    assert created.returncode == 0, created.stdout + created.stderr
    assert f"audit topic {topic!r} created: 6 partitions" in created.stdout


def test_unit_process_and_tail_take_the_exactly_once_options() -> None:
    parser = build_parser()
    default = parser.parse_args(["process", "--handler", "m:f", "--input", "t"])
    assert (default.exactly_once, default.transactional_id) == (False, None)
    assert default.session_timeout_ms == 10_000
    args = parser.parse_args(
        [
            "process",
            "--handler",
            "m:f",
            "--input",
            "t",
            "--exactly-once",
            "--transactional-id",
            "billing",
            "--session-timeout-ms",
            "1500",
        ]
    )
    assert (args.exactly_once, args.transactional_id, args.session_timeout_ms) == (
        True,
        "billing",
        1500,
    )
    assert main(["process", "--handler", "m:f", "--input", "t", "--transactional-id", "x"]) == 2
    assert parser.parse_args(["tail", "t"]).read_committed is False
    assert parser.parse_args(["tail", "t", "--read-committed"]).read_committed is True


async def test_tail_read_committed_skips_aborted_and_open_transactions(
    tmp_path: Path, cli_env: dict[str, str], kafka_bootstrap: str, topic: str
) -> None:
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, transactional_id=topic)
    async with KafkaProducerClient(config=config) as transactional:
        await transactional.begin_transaction()
        await transactional.publish(topic, "aborted", key="k")
        await transactional.abort_transaction()
        await transactional.begin_transaction()
        await transactional.publish(topic, "committed", key="k")
        await transactional.commit_transaction()

    def tail_values(count: int, *flags: str) -> list[str]:
        result = run_cli(
            ["tail", topic, "--from-beginning", "--json", "--max-messages", str(count), *flags],
            cwd=tmp_path,
            env=cli_env | {"RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        )
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["value"] for line in result.stdout.splitlines()]

    # The aborted record is first in the log: read_uncommitted prints it, read_committed
    # skips it and its first record is the committed one.
    assert await asyncio.to_thread(tail_values, 2) == ["aborted", "committed"]
    assert await asyncio.to_thread(tail_values, 1, "--read-committed") == ["committed"]
