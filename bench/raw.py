"""The raw lines: a bare Kafka client sending the service's record with the service's producer
settings, no HTTP and no validation. What each HTTP line is judged against.

Each line runs in a process of its own (`python -m bench.raw KIND ...`, started by bench/run.py),
so its CPU time and its resident memory are the client's alone, not the bench's plotting and
bookkeeping. It prints its `Measurement` as one JSON line at the end.

Kinds:
- `aiokafka-single`: N tasks, each `send_and_wait` in a loop (what one `POST /audit` does);
- `aiokafka-batched`: N tasks, each `send` B times, then awaits the B deliveries (a batch request);
- `aiokafka-send-batch`: N tasks, each fills one `create_batch()` with the B records and hands
  it over with `send_batch()` (one future for the B; aiokafka's own batch API), then awaits it;
- `confluent-batched`: N threads, each `produce` B times on one librdkafka producer then waits for
  the B delivery reports (the librdkafka ceiling; confluent-kafka is in the `bench` group).

A batched line's latency is the batch's (first send to last acknowledgement), and its events
are B per request, as for `POST /audit/batch`.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import threading
import time
from typing import Any

import uvloop
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from bench.procfs import CpuProbe
from bench.producers import aiokafka_options, kafka_properties
from bench.stats import Measurement, from_latencies
from bench.workload import KafkaRecord, kafka_record

KINDS = ("aiokafka-single", "aiokafka-batched", "aiokafka-send-batch", "confluent-batched")
# The aiokafka lines run on uvloop: a raw client costs about 10% less CPU per record on it than on
# the standard library's loop (the service's, app/cli/server.py), so the service's figures are
# compared with the cheaper of the two.
EVENT_LOOP = "uvloop"
_FLUSH_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class Load:
    """How one raw line is driven."""

    topic: str
    connections: int
    batch: int
    warmup_s: float
    duration_s: float
    whole_batches: bool = False  # aiokafka-send-batch


@dataclasses.dataclass
class _Tally:
    """Latencies (ns) of completed requests and errors by type, shared by the senders."""

    latencies: list[int] = dataclasses.field(default_factory=list)
    errors: dict[str, int] = dataclasses.field(default_factory=dict)

    def failed(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1


async def _aiokafka_window(
    producer: Any, record: KafkaRecord, load: Load, duration_s: float
) -> tuple[_Tally, float]:
    """`load.connections` tasks send until the deadline; the tally and the wall time until the
    last request finished."""
    tally = _Tally()
    started = time.perf_counter()
    deadline = started + duration_s

    async def single() -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter_ns()
            try:
                await producer.send_and_wait(
                    load.topic, record.value, key=record.key, headers=record.headers
                )
            except KafkaError as exc:
                tally.failed(exc)
            else:
                tally.latencies.append(time.perf_counter_ns() - sent)

    async def batched() -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter_ns()
            try:
                deliveries = [
                    await producer.send(
                        load.topic, record.value, key=record.key, headers=record.headers
                    )
                    for _ in range(load.batch)
                ]
                await asyncio.gather(*deliveries)
            except KafkaError as exc:
                tally.failed(exc)
            else:
                tally.latencies.append(time.perf_counter_ns() - sent)

    partitioner = DefaultPartitioner()

    async def send_batch() -> None:
        partitions = sorted(await producer.partitions_for(load.topic))
        partition = partitioner(record.key, partitions, partitions)
        while time.perf_counter() < deadline:
            sent = time.perf_counter_ns()
            try:
                batch = producer.create_batch()
                for _ in range(load.batch):
                    batch.append(
                        key=record.key, value=record.value, timestamp=None, headers=record.headers
                    )
                batch.close()
                await (await producer.send_batch(batch, load.topic, partition=partition))
            except KafkaError as exc:
                tally.failed(exc)
            else:
                tally.latencies.append(time.perf_counter_ns() - sent)

    sender = single if load.batch == 1 else send_batch if load.whole_batches else batched
    async with asyncio.TaskGroup() as group:
        for _ in range(load.connections):
            group.create_task(sender())
    return tally, time.perf_counter() - started


async def _aiokafka_line(
    bootstrap_servers: str, record: KafkaRecord, load: Load, cpu: CpuProbe
) -> tuple[_Tally, float]:
    producer = AIOKafkaProducer(**aiokafka_options(bootstrap_servers))
    await producer.start()
    try:
        # The warm-up creates the topic and fills the connection and batch pipelines.
        await _aiokafka_window(producer, record, load, load.warmup_s)
        cpu.start()
        tally, elapsed = await _aiokafka_window(producer, record, load, load.duration_s)
        cpu.stop()
    finally:
        await producer.stop()
    return tally, elapsed


def _confluent_window(
    producer: Any, record: KafkaRecord, load: Load, duration_s: float
) -> tuple[_Tally, float]:
    """`load.connections` threads each produce a batch and wait for its delivery reports, until
    the deadline. The delivery reports run in the caller's polling loop (one thread), so a
    batch's countdown needs no lock; the tally, shared by the senders, has one."""
    tally = _Tally()
    guard = threading.Lock()
    started = time.perf_counter()
    deadline = started + duration_s

    def one_batch() -> None:
        remaining = [load.batch]
        errors: list[Any] = []
        delivered = threading.Event()

        def on_delivery(error: Any, _message: Any) -> None:
            if error is not None:
                errors.append(error)
            remaining[0] -= 1
            if remaining[0] == 0:
                delivered.set()

        sent = time.perf_counter_ns()
        for _ in range(load.batch):
            producer.produce(
                load.topic,
                record.value,
                key=record.key,
                headers=record.headers,
                on_delivery=on_delivery,
            )
        delivered.wait()
        with guard:
            if errors:
                tally.errors["KafkaError"] = tally.errors.get("KafkaError", 0) + 1
            else:
                tally.latencies.append(time.perf_counter_ns() - sent)

    def sender() -> None:
        while time.perf_counter() < deadline:
            one_batch()

    threads = [threading.Thread(target=sender) for _ in range(load.connections)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        producer.poll(0.01)  # serves the delivery reports
    return tally, time.perf_counter() - started


def _confluent_line(
    bootstrap_servers: str, record: KafkaRecord, load: Load, cpu: CpuProbe
) -> tuple[_Tally, float]:
    # Imported here: the package is in the bench group only, and the aiokafka lines need none.
    import confluent_kafka  # noqa: PLC0415

    producer = confluent_kafka.Producer(kafka_properties(bootstrap_servers))
    try:
        _confluent_window(producer, record, load, load.warmup_s)
        cpu.start()
        tally, elapsed = _confluent_window(producer, record, load, load.duration_s)
        cpu.stop()
    finally:
        producer.flush(_FLUSH_TIMEOUT_S)
    return tally, elapsed


def measure(
    kind: str,
    bootstrap_servers: str,
    load: Load,
    *,
    broker_pid: int | None,
    name: str,
    label: str,
) -> Measurement:
    """One raw line in this process; CPU is this process's (and the broker's) over the
    measured window."""
    record = kafka_record()
    pids = {"producer": os.getpid()}
    if broker_pid is not None:
        pids["broker"] = broker_pid
    cpu = CpuProbe(pids)
    if kind == "confluent-batched":
        tally, elapsed = _confluent_line(bootstrap_servers, record, load, cpu)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            tally, elapsed = runner.run(_aiokafka_line(bootstrap_servers, record, load, cpu))
    measured = from_latencies(name, label, tally.latencies, elapsed, tally.errors)
    return dataclasses.replace(
        measured,
        cpu_percent={name: round(100 * used / elapsed, 1) for name, used in cpu.used_s.items()},
        cpu_s=cpu.used_s,
        connections=load.connections,
        events_per_request=load.batch,
    )


def main() -> None:
    """`python -m bench.raw KIND --bootstrap-servers ... --topic ...`: one line, its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup-s", type=float, required=True)
    parser.add_argument("--duration-s", type=float, required=True)
    parser.add_argument("--broker-pid", type=int)
    args = parser.parse_args()
    load = Load(
        topic=args.topic,
        connections=args.connections,
        batch=1 if args.kind == "aiokafka-single" else args.batch,
        warmup_s=args.warmup_s,
        duration_s=args.duration_s,
        whole_batches=args.kind == "aiokafka-send-batch",
    )
    measured = measure(
        args.kind,
        args.bootstrap_servers,
        load,
        broker_pid=args.broker_pid,
        name=args.name,
        label=args.label,
    )
    print(json.dumps(measured.to_json()), flush=True)


if __name__ == "__main__":
    main()
