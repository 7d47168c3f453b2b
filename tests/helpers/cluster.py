"""A three-node cluster from a test's side: who leads a topic's partitions, which replicas are in
sync, and audit load that keeps each user's order."""

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest

from app.embedded import EmbeddedKafkaCluster
from tests.helpers.load import Answer, answer_of


@dataclass(frozen=True)
class PartitionState:
    """One partition as the cluster's metadata describes it."""

    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


async def partition_states(address: str, topic: str) -> list[PartitionState]:
    """Leader, replicas and in-sync replicas of every partition of `topic` (it exists), as the
    node at `address` (`host:port`, one node) knows them. One node, asked directly: a node just
    restarted answers from its own metadata log, which may still be behind the cluster's."""
    host, port = address.rsplit(":", 1)
    conn = await create_conn(host, int(port), request_timeout_ms=5000)
    try:
        response = await conn.send(MetadataRequest([topic], allow_auto_topic_creation=False))
    finally:
        conn.close()
    (described,) = response.to_object()["topics"]
    assert described["error_code"] == 0, described
    return sorted(
        (
            PartitionState(p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
            for p in described["partitions"]
        ),
        key=lambda state: state.partition,
    )


async def wait_for_partitions(
    cluster: EmbeddedKafkaCluster,
    topic: str,
    check: Callable[[list[PartitionState]], bool],
    *,
    timeout_s: float,
) -> float:
    """Poll the topic's partitions until `check` holds on every running node; the seconds it
    took (fails after `timeout_s`). A node that does not answer meanwhile is asked again."""
    started = time.monotonic()
    last: object = None
    while time.monotonic() - started < timeout_s:
        try:
            views = [
                await partition_states(node.bootstrap_servers, topic)
                for node in cluster.nodes
                if node.is_running()
            ]
        except Exception as exc:  # a node still starting, or its metadata not there yet
            last = exc
        else:
            if all(check(states) for states in views):
                return time.monotonic() - started
            last = views
        await asyncio.sleep(0.1)
    raise AssertionError(f"{topic}: not true within {timeout_s}s; last: {last!r}")


def rss_mib(pid: int | None) -> float:
    """Resident memory of a live process, in MiB."""
    assert pid is not None
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = (line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@dataclass
class UserLoad:
    """Audit events posted user by user: each user's events one after another (numbered in
    `metadata.seq`), the users concurrently; every answer kept, in order of arrival."""

    client: httpx.AsyncClient
    users: int
    prefix: str = ""

    def __post_init__(self) -> None:
        self.prefix = self.prefix or uuid.uuid4().hex[:8]
        self.answers: list[Answer] = []
        self.answered_at: list[float] = []
        self._next_seq = [0] * self.users

    def event(self, user: int) -> dict[str, Any]:
        """The next event of `user`."""
        seq = self._next_seq[user]
        self._next_seq[user] += 1
        return {
            "event_id": f"{self.prefix}-u{user}-{seq}",
            "user_id": f"{self.prefix}-user-{user}",
            "model": "m",
            "prompt": f"prompt {seq}",
            "response": f"response {seq}",
            "metadata": {"seq": seq},
        }

    async def run(self, total: int, answered: Callable[[int], None] | None = None) -> None:
        """Post `total` events more, spread evenly over the users; `answered(n)` after each
        answer (n answers so far), to trigger a fault mid-run."""
        per_user, extra = divmod(total, self.users)

        async def user(index: int) -> None:
            for _ in range(per_user + (index < extra)):
                event = self.event(index)
                started = time.monotonic()
                try:
                    response = await self.client.post("/audit", json=event)
                except httpx.HTTPError as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                    answer = answer_of(0, event, None, time.monotonic() - started, failure)
                else:
                    answer = answer_of(0, event, response, time.monotonic() - started)
                answer.index = len(self.answers)
                self.answers.append(answer)
                self.answered_at.append(time.monotonic())
                if answered is not None:
                    answered(len(self.answers))

        await asyncio.gather(*(user(index) for index in range(self.users)))
