"""Every compression codec Kafka offers, end to end on the session broker: the service's
producer compresses with it (RG_KAFKA_COMPRESSION_TYPE), the topic stores with it
(`compression.type`), and every reader decompresses it: GET /messages, `tail` and `verify`
(the console script as a real process)."""

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.app import client_for, reader_connected
from tests.helpers.kafka import AUDIT_TOPIC_CONFIGS
from tests.helpers.processes import run_cli

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
EVENTS = 3


async def messages(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """GET /messages until it holds `count` records."""
    deadline = time.monotonic() + 30
    while True:
        page = (await client.get("/messages", params={"limit": 100})).json()
        if page["count"] >= count or time.monotonic() > deadline:
            found: list[dict[str, Any]] = page["messages"]
            return found
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("codec", CODECS)
async def test_every_reader_reads_a_topic_compressed_with(
    codec: str, kafka_bootstrap: str, create_topic: Any, tmp_path: Path
) -> None:
    topic = await create_topic(
        partitions=1, configs=AUDIT_TOPIC_CONFIGS | {"compression.type": codec}
    )
    async with client_for(
        kafka_bootstrap, audit_topic=topic, kafka_compression_type=codec
    ) as client:
        await reader_connected(client)
        for n in range(EVENTS):
            event = {"user_id": "u", "model": "m", "prompt": f"{codec} {n} " * 50, "response": "r"}
            written = await client.post("/audit", json=event)
            assert written.status_code == 201, written.text
        shown = await messages(client, EVENTS)
    assert sorted(m["value"]["prompt"].split()[1] for m in shown) == ["0", "1", "2"]

    env = {key: value for key, value in os.environ.items() if not key.startswith("RG_")}
    env["RG_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    tail, verify = await asyncio.gather(
        asyncio.to_thread(
            run_cli,
            ["tail", topic, "--from-beginning", "--max-messages", str(EVENTS), "--json"],
            cwd=tmp_path,
            env=env,
        ),
        asyncio.to_thread(run_cli, ["verify", "--topic", topic, "--json"], cwd=tmp_path, env=env),
    )
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [line["value"]["prompt"].split()[1] for line in lines] == ["0", "1", "2"]
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["records_checked"] == EVENTS
