"""`process` (exactly-once and at-least-once) on the three-node cluster while its output
partition has no leader at all for longer than the producer's request timeout: the output
topic's one replica is on a node that is killed (SIGKILL) and brought back. The process keeps
running and, once the node is back, every input's output arrives (exactly once where asked)."""

import asyncio
import signal
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.embedded import EmbeddedKafkaCluster
from tests.helpers.cluster import wait_for_partitions
from tests.helpers.processes import Running
from tests.helpers.streams import (
    expected_sequences,
    pairs,
    per_key_sequences,
    process_env,
    read_outputs,
    seed_keyed,
    write_handler,
)

INPUTS = 600
REQUEST_TIMEOUT_S = 2.0


async def pinned_topics(bootstrap: str, source_node: int, output_node: int) -> tuple[str, str]:
    """A source and an output topic of one partition each, each with its one replica on the
    node given."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [f"test-{uuid.uuid4().hex}" for _ in range(2)]
        await admin.create_topics(
            [
                NewTopic(name, -1, -1, replica_assignments={0: [node]})
                for name, node in zip(names, (source_node, output_node), strict=True)
            ],
            timeout_ms=30_000,
        )
        return names[0], names[1]
    finally:
        await admin.close()


@pytest.mark.parametrize("exactly_once", [True, False], ids=["exactly_once", "at_least_once"])
async def test_an_output_partition_without_a_leader_holds_the_process_up_not_down(
    cluster: EmbeddedKafkaCluster, tmp_path: Path, exactly_once: bool
) -> None:
    bootstrap = cluster.bootstrap_servers
    source, output = await pinned_topics(bootstrap, source_node=1, output_node=3)
    await wait_for_partitions(cluster, output, lambda s: s[0].leader == 3, timeout_s=30)
    await seed_keyed(bootstrap, source, INPUTS)
    write_handler(tmp_path)
    env = process_env(bootstrap, output) | {
        "RG_KAFKA_REQUEST_TIMEOUT_MS": str(int(REQUEST_TIMEOUT_S * 1000)),
        "HANDLER_DELAY_S": "0.05",
    }
    args = ["process", "--handler", "stream_handler:handle", "--input", source]
    args += ["--group", f"group-{uuid.uuid4().hex}", "--batch-size", "20"]
    args += ["--exactly-once"] if exactly_once else []
    running = Running(args, cwd=tmp_path, env=env)
    try:
        # Some outputs first, then the output's only node goes for three request timeouts.
        await read_outputs(bootstrap, output, committed=exactly_once, distinct=40, idle_s=0)
        cluster.node(3).kill()
        killed = time.monotonic()
        await wait_for_partitions(cluster, output, lambda s: s[0].leader == -1, timeout_s=60)
        await asyncio.sleep(REQUEST_TIMEOUT_S * 3)
        assert running.process.poll() is None, running.output()[-3000:]
        await asyncio.to_thread(cluster.node(3).start)
        back = time.monotonic()
        outputs = await read_outputs(
            bootstrap, output, committed=exactly_once, distinct=INPUTS, timeout_s=120
        )
        alive = running.process.poll() is None
    finally:
        code = running.stop(signal.SIGTERM)
    log = running.output()
    print(
        f"\n[cluster] process {'exactly-once' if exactly_once else 'at-least-once'}, output "
        f"partition without a leader {back - killed:.1f}s (request timeout "
        f"{REQUEST_TIMEOUT_S:.0f}s): {INPUTS} inputs -> {len(outputs)} outputs; "
        f"{sum('WARNING' in line or 'ERROR' in line for line in log.splitlines())} "
        "WARNING/ERROR lines"
    )
    assert alive, log[-3000:]
    assert code == 0, log[-3000:]
    expected = expected_sequences(INPUTS)
    if exactly_once:
        assert per_key_sequences(outputs) == expected
    else:
        assert pairs(outputs) == {(key, seq) for key, seqs in expected.items() for seq in seqs}
