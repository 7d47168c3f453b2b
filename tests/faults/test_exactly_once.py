"""`process --exactly-once` under real faults: SIGKILLed mid-batch and restarted, and an
instance frozen past its session whose partitions another took over. A read_committed reader
of the outputs sees each input's output exactly once, in per-key order; the same kills with
at-least-once lose nothing but repeat (the figures are printed)."""

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from app.embedded import EmbeddedKafka
from app.kafka import KafkaMessage
from tests.helpers.processes import Running, freeze
from tests.helpers.streams import (
    create_topics,
    expected_sequences,
    pairs,
    per_key_sequences,
    process_args,
    process_env,
    read_outputs,
    repeats,
    seed_keyed,
    wait_for_file,
    wait_for_output,
    write_handler,
)

INPUTS = 2000


@pytest.fixture
def bootstrap(own_broker: EmbeddedKafka) -> str:
    """The fault tests' own broker: its groups accept 1.5 s sessions."""
    return own_broker.bootstrap_servers


async def killed_three_times(
    bootstrap: str, folder: Path, *, exactly_once: bool
) -> tuple[str, list[KafkaMessage], float]:
    """Run `process` over INPUTS keyed records, SIGKILL it three times just as a batch's
    outputs are being sent, restart it, and let the last run finish. Returns the output topic,
    what a read_committed reader sees there, and the seconds it all took."""
    source, output = await create_topics(bootstrap, 3, 3)
    await seed_keyed(bootstrap, source, INPUTS)
    write_handler(folder)
    # 20 KB per output: sending a batch takes a while, so the kill lands mid-send.
    env = process_env(bootstrap, output) | {"PAD_BYTES": "30000"}
    args = process_args(source, f"group-{uuid.uuid4().hex}", exactly_once=exactly_once)
    started = time.monotonic()
    for kill in range(3):
        marker = folder / f"sending-{kill}"
        victim = Running(
            args, cwd=folder, env=env | {"MARKER": str(marker), "MARK_AT_CALL": str(3 + kill)}
        )
        try:
            await wait_for_file(marker, alive=victim)
            # The outputs are about to be queued; 10-40 ms later some are written, the batch
            # not committed yet (how far it got varies: three kills, three delays).
            await asyncio.sleep((0.01, 0.025, 0.04)[kill])
        finally:
            victim.stop(signal.SIGKILL)
    last = Running(args, cwd=folder, env=env)
    try:
        outputs = await read_outputs(
            bootstrap, output, committed=True, distinct=INPUTS, timeout_s=90
        )
    finally:
        code = last.stop(signal.SIGTERM)
    assert code == 0, last.output()[-3000:]
    return output, outputs, time.monotonic() - started


async def test_exactly_once_survives_sigkill_mid_batch_and_restarts(
    bootstrap: str, tmp_path: Path
) -> None:
    output, outputs, took_s = await killed_three_times(bootstrap, tmp_path, exactly_once=True)
    # Each input's output exactly once, and per key in input order.
    assert per_key_sequences(outputs) == expected_sequences(INPUTS)
    everything = await read_outputs(bootstrap, output, committed=False, distinct=INPUTS, idle_s=0.5)
    print(
        f"\nexactly-once, 3 SIGKILLs mid-batch: {INPUTS} inputs -> {len(outputs)} outputs "
        f"seen by read_committed ({repeats(outputs)} repeats); {len(everything) - len(outputs)} "
        f"outputs of aborted batches in the log, invisible to it; {took_s:.1f} s"
    )


async def test_at_least_once_under_the_same_kills_loses_nothing_but_repeats(
    bootstrap: str, tmp_path: Path
) -> None:
    _, outputs, took_s = await killed_three_times(bootstrap, tmp_path, exactly_once=False)
    assert pairs(outputs) == {
        (key, seq) for key, seqs in expected_sequences(INPUTS).items() for seq in seqs
    }
    for key, seqs in per_key_sequences(outputs).items():
        firsts = list(dict.fromkeys(seqs))
        assert firsts == sorted(firsts), f"{key} out of order"
    print(
        f"\nat-least-once, 3 SIGKILLs mid-batch: {INPUTS} inputs -> {len(outputs)} outputs, "
        f"{repeats(outputs)} of them repeats; {took_s:.1f} s"
    )


async def test_an_instance_frozen_past_its_session_is_fenced_and_stops(
    bootstrap: str, tmp_path: Path
) -> None:
    count = 300
    source, output = await create_topics(bootstrap, 3, 3)
    await seed_keyed(bootstrap, source, count)
    write_handler(tmp_path)
    group = f"group-{uuid.uuid4().hex}"
    env = process_env(bootstrap, output) | {"HANDLER_DELAY_S": "0.1"}
    args = process_args(source, group, exactly_once=True, batch=60)
    in_handler = tmp_path / "in-handler"
    older = Running(args, cwd=tmp_path, env=env | {"IN_HANDLER": str(in_handler)})
    newer: Running | None = None
    try:
        await wait_for_file(in_handler, alive=older)
        # Frozen inside its handler, a transaction open: the group gives its partitions to
        # the newer instance once its session (1.5 s) runs out; the newer one's producers
        # take the same transactional ids and fence it.
        freeze(older.process.pid)
        frozen_at = time.monotonic()
        newer = Running(args, cwd=tmp_path, env=env)
        for partition in range(3):
            await wait_for_output(newer, f"holding {group}.{source}.{partition}")
        took_over_s = time.monotonic() - frozen_at
        os.kill(older.process.pid, signal.SIGCONT)
        code = older.process.wait(timeout=30)
        said = older.output()
        assert code != 0, said[-3000:]
        assert f"fenced: another instance took over {group}.{source}." in said, said[-3000:]
        assert "Traceback" not in said
        outputs = await read_outputs(bootstrap, output, committed=True, distinct=count)
        assert per_key_sequences(outputs) == expected_sequences(count)
        assert newer.stop(signal.SIGTERM) == 0
    finally:
        older.close()
        if newer is not None:
            newer.close()
    fenced_line = next(line for line in said.splitlines() if "fenced:" in line)
    fenced = fenced_line[fenced_line.index("fenced:") :]
    print(
        f"\nfrozen instance: partitions taken over {took_over_s:.1f} s after SIGSTOP "
        f"(session 1.5 s); on SIGCONT it exited {code}: {fenced}"
    )
