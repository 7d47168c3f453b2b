"""The service on a three-node cluster loses nodes while it takes audit events: one node (the
audit topic's leader), then two. Real JVMs killed with SIGKILL; the service is never restarted
and runs without a spool, so every answer is a 201 (stored on at least two nodes) or a 503.
Last, a partition with no leader at all for longer than the producer's request timeout."""

import asyncio
import collections
import os
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from app.embedded import EmbeddedKafkaCluster
from tests.helpers.cluster import PartitionState, UserLoad, partition_states, wait_for_partitions
from tests.helpers.kafka import TopicDescription, describe_topic, records_of
from tests.helpers.load import Answer, summary
from tests.helpers.processes import run_cli
from tests.helpers.service import LiveService, running_service

TOTAL = 2000
USERS = 8
# Bounds every request while a leader is away (Kafka fences a dead node after 9 s by default).
PRODUCE_TIMEOUT_S = 5.0


def serve(cluster: EmbeddedKafkaCluster, workdir: Path) -> AbstractContextManager[LiveService]:
    # One partition: one leader to kill, and every user's records on it.
    return running_service(
        cluster.bootstrap_servers,
        workdir,
        audit_topic_partitions="1",
        produce_timeout_s=str(PRODUCE_TIMEOUT_S),
    )


def all_in_sync(states: list[PartitionState]) -> bool:
    return all(len(state.isr) == 3 for state in states)


async def settled(
    cluster: EmbeddedKafkaCluster, topic: str, *, partitions: int = 1
) -> PartitionState:
    """The topic's first partition once every node knows all `partitions` with their three
    replicas in sync: the service is ready when the node it asked created the topic, and the
    others learn of it from the metadata log a moment later (asked too soon, one answers
    UNKNOWN_TOPIC_OR_PARTITION)."""
    await wait_for_partitions(
        cluster,
        topic,
        lambda states: len(states) == partitions and all_in_sync(states),
        timeout_s=30,
    )
    return (await partition_states(cluster.nodes[0].bootstrap_servers, topic))[0]


async def restart(cluster: EmbeddedKafkaCluster, *node_ids: int) -> None:
    """Bring killed nodes back (same ports and data) without blocking the event loop."""
    await asyncio.gather(*(asyncio.to_thread(cluster.node(n).start) for n in node_ids))


def assert_only_201_or_503(answers: list[Answer]) -> None:
    for answer in answers:
        assert answer.status in (201, 503), answer
        if answer.status == 503:
            assert answer.retry_after, answer
            assert answer.body["error"]["message"], answer


async def assert_stored_once_in_user_order(
    bootstrap: str, service: LiveService, acked: list[Answer]
) -> None:
    """Every acknowledged event is in the topic exactly once, where its receipt says, and each
    user's acknowledged events are stored in the order the user sent them."""
    records = await records_of(bootstrap, service.audit_topic)
    stored = collections.Counter(record.header("rg-event-id") for record in records)
    where = {record.header("rg-event-id"): (record.partition, record.offset) for record in records}
    for answer in acked:
        assert stored[answer.event_id] == 1, answer
        assert where[answer.event_id] == (answer.body["partition"], answer.body["offset"])
    acked_ids = {answer.event_id for answer in acked}
    order: dict[str, list[int]] = collections.defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.header("rg-event-id") in acked_ids:
            order[record.value["user_id"]].append(record.value["metadata"]["seq"])
    for user, seqs in order.items():
        assert seqs == sorted(seqs), f"{user}: stored out of order: {seqs}"


async def topic_created_with_a_node_down(
    cluster: EmbeddedKafkaCluster, workdir: Path
) -> TopicDescription:
    """The audit topic a service (default settings, a fresh topic) creates while one of the
    three nodes is down and the metadata lists two brokers."""
    with running_service(cluster.bootstrap_servers, workdir) as service:
        # Every running node knows the topic first (see `settled`): any of them may be asked.
        await wait_for_partitions(cluster, service.audit_topic, bool, timeout_s=30)
        return await describe_topic(cluster.bootstrap_servers, service.audit_topic)


async def test_audit_topic_on_three_nodes_is_replicated_3_with_min_insync_2(
    cluster: EmbeddedKafkaCluster, tmp_path: Path
) -> None:
    with running_service(cluster.bootstrap_servers, tmp_path) as service:
        await settled(cluster, service.audit_topic, partitions=6)
        topic = await describe_topic(cluster.bootstrap_servers, service.audit_topic)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
        env["RG_KAFKA_BOOTSTRAP_SERVERS"] = cluster.bootstrap_servers
        env["RG_AUDIT_TOPIC"] = service.audit_topic
        check = run_cli(["topics", "check"], cwd=tmp_path, env=env)
    assert topic.partitions == 6
    assert topic.replication == 3
    assert topic.configs["min.insync.replicas"] == "2"
    # The brokers' own default stays 1: the 2 is the service's doing.
    assert check.returncode == 0, check.stdout + check.stderr


async def test_leader_killed_during_2000_audits(
    cluster: EmbeddedKafkaCluster, tmp_path: Path
) -> None:
    bootstrap = cluster.bootstrap_servers
    fault: dict[str, float] = {}
    kill_now = asyncio.Event()
    with serve(cluster, tmp_path) as service:
        before = await settled(cluster, service.audit_topic)
        leader = before.leader

        async def kill_leader() -> None:
            await kill_now.wait()
            cluster.node(leader).kill()
            fault["killed"] = time.monotonic()
            fault["elected_s"] = await wait_for_partitions(
                cluster,
                service.audit_topic,
                lambda states: all(s.leader not in (leader, -1) for s in states),
                timeout_s=60,
            )

        def answered(count: int) -> None:
            if count >= TOTAL // 4:
                kill_now.set()

        async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
            load = UserLoad(client, USERS)
            killer = asyncio.create_task(kill_leader())
            started = time.monotonic()
            await load.run(TOTAL, answered)
            elapsed = time.monotonic() - started
            await killer
        assert service.process.poll() is None, "the service died"

        await restart(cluster, leader)
        caught_up_s = await wait_for_partitions(
            cluster, service.audit_topic, all_in_sync, timeout_s=60
        )
        (after,) = await partition_states(
            cluster.node(leader).bootstrap_servers, service.audit_topic
        )

    answers = load.answers
    acked = [a for a in answers if a.status == 201]
    killed = fault["killed"]
    refused_at = [t for a, t in zip(answers, load.answered_at, strict=True) if a.status == 503]
    # Failover as a client sees it: from the kill to the first 201 of a request sent after it.
    recovered = min(
        t
        for a, t in zip(answers, load.answered_at, strict=True)
        if a.status == 201 and t - a.seconds > killed
    )
    healthy = sorted(
        a.seconds for a, t in zip(answers, load.answered_at, strict=True) if t < killed
    )
    print(
        f"\n[cluster] before the kill, POST /audit p50 {healthy[len(healthy) // 2] * 1000:.1f} ms, "
        f"p99 {healthy[len(healthy) * 99 // 100] * 1000:.1f} ms ({USERS} users, acks=all, "
        "min.insync.replicas=2)"
    )
    print(
        f"\n[cluster] leader (node {leader}) SIGKILLed after {TOTAL // 4} of {TOTAL} POST /audit "
        f"({USERS} users, RG_PRODUCE_TIMEOUT_S={PRODUCE_TIMEOUT_S}): {summary(answers)}; "
        f"new leader elected {fault['elected_s']:.1f}s after the kill; first 201 sent after the "
        f"kill answered {recovered - killed:.1f}s after it"
        + (
            f"; first 503 {min(refused_at) - killed:.1f}s after the kill, "
            f"first 201 {recovered - min(refused_at):.1f}s after the first 503"
            if refused_at
            else ""
        )
        + f"; slowest answer {max(a.seconds for a in answers):.1f}s; run {elapsed:.1f}s; "
        f"node back in sync {caught_up_s:.1f}s after its restart; leader now {after.leader}"
    )
    assert len(answers) == TOTAL
    assert_only_201_or_503(answers)
    assert len(acked) > TOTAL // 2
    assert max(a.seconds for a in answers) < PRODUCE_TIMEOUT_S + 5
    await assert_stored_once_in_user_order(bootstrap, service, acked)
    assert len(after.isr) == 3


async def test_two_nodes_down_refuses_writes_and_loses_no_acknowledged_one(
    cluster: EmbeddedKafkaCluster, tmp_path: Path
) -> None:
    with serve(cluster, tmp_path) as service:
        topic = service.audit_topic
        before = await settled(cluster, topic)
        first = before.leader
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
            load = UserLoad(client, USERS)
            await load.run(200)
            # The first loss: the leader. The other two elect a new one and shrink the in-sync
            # replicas to themselves; acknowledged writes go on (on both of them).
            cluster.node(first).kill()
            await wait_for_partitions(
                cluster, topic, lambda s: s[0].leader not in (first, -1), timeout_s=60
            )
            (shrunk,) = await partition_states(cluster.nodes[first % 3].bootstrap_servers, topic)
            second = shrunk.leader
            # A service starting now sees two brokers, and still makes its topic one that
            # survives a node: 3 replicas (one on the node that is down), min.insync.replicas 2.
            late = await topic_created_with_a_node_down(cluster, tmp_path / "late")
            await load.run(200)
            one_down = len(load.answers)
            # The second loss: the new leader. One node is left: no quorum, no new leader.
            cluster.node(second).kill()
            killed = time.monotonic()
            await load.run(USERS)
            two_down = load.answers[one_down:]
            ready = await client.get("/readyz")

            await restart(cluster, first, second)
            back_s = await wait_for_partitions(cluster, topic, all_in_sync, timeout_s=90)
            # The same service process writes again once the cluster is whole.
            await load.run(USERS)
            recovered = load.answers[-USERS:]
        assert service.process.poll() is None, "the service died"

    print(
        f"\n[cluster] nodes {first} then {second} SIGKILLed: with one node down "
        f"{summary(load.answers[:one_down])}; with two down {summary(two_down)} "
        f"(slowest {max(a.seconds for a in two_down):.1f}s; GET /readyz {ready.status_code}; "
        f"{two_down[0].body['error']['message'] if two_down[0].status == 503 else ''}); both "
        f"back and in sync {back_s:.1f}s after their restart "
        f"({time.monotonic() - killed:.0f}s after the second kill); then {summary(recovered)}"
    )
    assert (late.replication, late.configs["min.insync.replicas"]) == (3, "2")
    assert_only_201_or_503(load.answers)
    assert all(a.status == 201 for a in load.answers[:200]), summary(load.answers[:200])
    assert all(a.status == 503 for a in two_down), summary(two_down)
    assert max(a.seconds for a in two_down) < PRODUCE_TIMEOUT_S + 5
    assert all(a.status == 201 for a in recovered), summary(recovered)
    acked = [a for a in load.answers if a.status == 201]
    await assert_stored_once_in_user_order(cluster.bootstrap_servers, service, acked)


async def test_a_partition_without_a_leader_beyond_the_request_timeout_loses_no_queued_record(
    cluster: EmbeddedKafkaCluster, tmp_path: Path
) -> None:
    # The topic's one replica on one node: killed, the partition has no leader at all. The
    # producer must keep what it holds for it past the request timeout (not fail it), and the
    # partition must take writes again once its node is back.
    request_timeout_s = 2.0
    with running_service(
        cluster.bootstrap_servers,
        tmp_path,
        audit_topic_partitions="1",
        audit_topic_replication="1",
        kafka_request_timeout_ms=str(int(request_timeout_s * 1000)),
        produce_timeout_s=str(request_timeout_s),
    ) as service:
        topic = service.audit_topic
        await wait_for_partitions(cluster, topic, lambda s: s[0].leader > 0, timeout_s=30)
        (state,) = await partition_states(cluster.nodes[0].bootstrap_servers, topic)
        ids = [f"leaderless-{uuid.uuid4().hex[:8]}-{n}" for n in range(42)]
        first, queued, waited, after = ids[0], ids[1:40], ids[40], ids[41]
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:

            async def post(event_id: str, *, wait: bool = True) -> httpx.Response:
                event = {"event_id": event_id, "user_id": "u", "model": "m", "prompt": "p"}
                return await client.post(
                    "/audit", params={"wait": str(wait).lower()}, json=event | {"response": "r"}
                )

            assert (await post(first)).status_code == 201
            cluster.node(state.leader).kill()
            await wait_for_partitions(cluster, topic, lambda s: s[0].leader == -1, timeout_s=60)
            answers = [await post(event_id, wait=False) for event_id in queued]
            assert {(a.status_code, a.json()["status"]) for a in answers} == {(202, "queued")}
            timed_out = await post(waited)
            assert timed_out.status_code == 503, timed_out.text
            # Their batches outlive the request timeout without a leader.
            await asyncio.sleep(request_timeout_s * 3)
            await restart(cluster, state.leader)
            await wait_for_partitions(cluster, topic, lambda s: s[0].leader > 0, timeout_s=60)
            retried = await post(waited)
            written = await post(after)
        log = service.log()
    records = await records_of(cluster.bootstrap_servers, topic)
    stored = collections.Counter(record.header("rg-event-id") for record in records)
    print(
        f"\n[cluster] partition without a leader (its one node killed) for "
        f"> {request_timeout_s * 3:.0f}s, request timeout {request_timeout_s:.0f}s: "
        f"{len(queued)} events answered 202 meanwhile, {sum(stored.values())} records stored"
    )
    assert (retried.status_code, written.status_code) == (201, 201), (retried.text, written.text)
    where = {record.header("rg-event-id"): record.offset for record in records}
    assert retried.json()["offset"] == where[waited]
    assert [event_id for event_id in ids if stored[event_id] != 1] == []
    assert "is void" not in log
    assert "OutOfOrderSequence" not in log
