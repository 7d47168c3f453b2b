"""Three `process` instances in one group over a 6-partition input; one is SIGKILLed mid-run
and the other two take its partitions over and finish: nothing unprocessed, and with
--exactly-once nothing twice (read_committed). Prints how long the takeover took."""

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from app.embedded import EmbeddedKafka
from tests.helpers.processes import Running, freeze
from tests.helpers.streams import (
    SESSION_MS,
    assigned_partitions,
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

INPUTS, KEYS = 1800, 30


@pytest.fixture
def bootstrap(own_broker: EmbeddedKafka) -> str:
    """The fault tests' own broker: its groups accept 1.5 s sessions."""
    return own_broker.bootstrap_servers


def latest_assignments(instances: list[Running], after: list[int]) -> list[set[int]]:
    """Each instance's latest assignment logged past line `after[i]` (empty: none yet)."""
    latest = []
    for instance, skip in zip(instances, after, strict=True):
        logged = instance.output().splitlines()[skip:]
        lines = [line for line in logged if "assigned partitions" in line]
        latest.append(assigned_partitions(lines[-1]) if lines else set())
    return latest


async def wait_for_assignment(
    instances: list[Running], partitions: int, after: list[int], timeout_s: float = 60
) -> list[set[int]]:
    """Wait until the instances' latest assignments split `partitions` among all of them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        latest = latest_assignments(instances, after)
        if (
            all(latest)
            and set().union(*latest) == set(range(partitions))
            and sum(map(len, latest)) == partitions
        ):
            return latest
        await asyncio.sleep(0.05)
    raise AssertionError(f"no full assignment in {timeout_s}s: {latest}")


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at_least_once", "exactly_once"])
async def test_two_of_three_instances_finish_the_input_after_one_is_killed(
    bootstrap: str, tmp_path: Path, exactly_once: bool
) -> None:
    source, output = await create_topics(bootstrap, 6, 6)
    await seed_keyed(bootstrap, source, INPUTS, keys=KEYS)
    write_handler(tmp_path)
    env = process_env(bootstrap, output) | {"HANDLER_DELAY_S": "0.1", "PAD_BYTES": "30000"}
    args = process_args(source, f"group-{uuid.uuid4().hex}", exactly_once=exactly_once, batch=20)
    marker = tmp_path / "sending"
    # The victim marks its 4th handler call: its outputs are about to be sent.
    victim_env = env | {"MARKER": str(marker), "MARK_AT_CALL": "4"}
    instances = [Running(args, cwd=tmp_path, env=victim_env if i == 0 else env) for i in range(3)]
    victim, survivors = instances[0], instances[1:]
    try:
        await wait_for_assignment(instances, 6, [0, 0, 0])
        await wait_for_file(marker, alive=victim)
        await asyncio.sleep(0.015)  # some of the batch's outputs written, none committed
        held = latest_assignments([victim], [0])[0]
        seen = [len(s.output().splitlines()) for s in survivors]
        killed_at = time.monotonic()
        victim.stop(signal.SIGKILL)
        after = await wait_for_assignment(survivors, 6, seen)
        took_over_s = time.monotonic() - killed_at
        outputs = await read_outputs(
            bootstrap, output, committed=exactly_once, distinct=INPUTS, timeout_s=90
        )
        for survivor in survivors:
            assert survivor.stop(signal.SIGTERM) == 0, survivor.output()[-3000:]
    finally:
        for instance in instances:
            instance.close()
    everything = {(k, s) for k, seqs in expected_sequences(INPUTS, KEYS).items() for s in seqs}
    assert pairs(outputs) == everything  # nothing unprocessed
    if exactly_once:
        assert per_key_sequences(outputs) == expected_sequences(INPUTS, KEYS)  # nothing twice
    guarantee = "exactly-once" if exactly_once else "at-least-once"
    print(
        f"\n{guarantee}, 3 instances, 6 partitions, one SIGKILLed mid-send holding {sorted(held)}: "
        f"the other two held {[sorted(a) for a in after]} {took_over_s:.1f} s later "
        f"(session {SESSION_MS} ms); {INPUTS} inputs -> {len(outputs)} outputs, "
        f"{repeats(outputs)} repeats"
    )


async def test_an_at_least_once_instance_frozen_past_its_session_carries_on(
    bootstrap: str, tmp_path: Path
) -> None:
    count = 300
    source, output = await create_topics(bootstrap, 3, 3)
    await seed_keyed(bootstrap, source, count)
    write_handler(tmp_path)
    env = process_env(bootstrap, output) | {"HANDLER_DELAY_S": "0.1"}
    args = process_args(source, f"group-{uuid.uuid4().hex}", exactly_once=False, batch=30)
    in_handler = tmp_path / "in-handler"
    older = Running(args, cwd=tmp_path, env=env | {"IN_HANDLER": str(in_handler)})
    newer: Running | None = None
    try:
        await wait_for_file(in_handler, alive=older)
        freeze(older.process.pid)  # frozen mid-batch, past its 1.5 s session
        newer = Running(args, cwd=tmp_path, env=env)
        await wait_for_assignment([newer], 3, [0])
        os.kill(older.process.pid, signal.SIGCONT)
        # Its batch's commit is refused (the group moved on): it says so and carries on.
        await wait_for_output(older, "not committed: the group rebalanced meanwhile")
        outputs = await read_outputs(bootstrap, output, committed=False, distinct=count)
        assert older.stop(signal.SIGTERM) == 0, older.output()[-3000:]
        assert newer.stop(signal.SIGTERM) == 0, newer.output()[-3000:]
    finally:
        older.close()
        if newer is not None:
            newer.close()
    assert pairs(outputs) == {(k, s) for k, seqs in expected_sequences(count).items() for s in seqs}
    print(
        f"\nat-least-once instance frozen past its session: its commit refused, it carried on; "
        f"{count} inputs -> {len(outputs)} outputs, {repeats(outputs)} repeats"
    )
