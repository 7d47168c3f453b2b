"""The client examples in examples/ (curl, Node.js, Go) run as real processes against the live
service; each receipt they print is checked against the record an independent consumer reads."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from app.kafka import KafkaConsumerClient, KafkaConsumerConfig, KafkaMessage
from tests.helpers import ROOT
from tests.helpers.service import LiveService

EXAMPLES = ROOT / "examples"


def tool(name: str) -> str:
    """The absolute path of `name`; the test fails (never skips) when it is not installed."""
    path = shutil.which(name)
    assert path is not None, f"`{name}` is not on PATH; it is needed to run the {name} example"
    return path


def run_example(
    argv: list[str], service: LiveService, *, cwd: Path = ROOT, **env: str
) -> dict[str, Any]:
    """Run an example against `service`; it must succeed and print an acked receipt."""
    result = subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, "RG_URL": service.url, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, f"{argv} exited {result.returncode}\n{output}"
    receipt: dict[str, Any] = json.loads(result.stdout)
    assert receipt["status"] == "acked", output
    assert receipt["topic"] == service.audit_topic, output
    assert receipt["digest"].startswith("sha256:"), output
    return receipt


async def record_of(bootstrap: str, topic: str, event_id: str) -> KafkaMessage:
    """The record of `topic` whose `rg-event-id` header is `event_id`, read from the beginning
    (the examples share the module's audit topic, so it need not be the only one)."""
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic], bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
    )
    async with consumer:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in await consumer.poll(timeout_ms=500):
                if message.header("rg-event-id") == event_id:
                    return message
    raise AssertionError(f"no record with rg-event-id {event_id} in {topic} within 30s")


async def assert_recorded(
    receipt: dict[str, Any], bootstrap: str, *, user_id: str, client: str
) -> None:
    """The receipt names a record keyed by `user_id`, tagged with `client`, with its digest."""
    record = await record_of(bootstrap, receipt["topic"], receipt["event_id"])
    assert (record.partition, record.offset) == (receipt["partition"], receipt["offset"])
    assert record.key == user_id
    assert record.value["event_id"] == receipt["event_id"]
    assert record.value["metadata"] == {"client": client}
    assert record.header("rg-digest") == receipt["digest"]


async def test_the_curl_example_records_an_event(
    live_service: LiveService, kafka_bootstrap: str
) -> None:
    tool("curl")  # called by the script
    receipt = run_example([tool("bash"), str(EXAMPLES / "curl" / "audit.sh")], live_service)
    await assert_recorded(receipt, kafka_bootstrap, user_id="example-curl", client="curl")


async def test_the_node_example_records_an_event(
    live_service: LiveService, kafka_bootstrap: str
) -> None:
    receipt = run_example([tool("node"), str(EXAMPLES / "node" / "audit.mjs")], live_service)
    await assert_recorded(receipt, kafka_bootstrap, user_id="example-node", client="node")


async def test_the_go_example_records_an_event(
    live_service: LiveService, kafka_bootstrap: str
) -> None:
    # GOTOOLCHAIN=local: the installed go must build it; never download another toolchain.
    receipt = run_example(
        [tool("go"), "run", "."], live_service, cwd=EXAMPLES / "go", GOTOOLCHAIN="local"
    )
    await assert_recorded(receipt, kafka_bootstrap, user_id="example-go", client="go")
