"""SIGTERM reaches the service while clients are writing: what it accepted is in Kafka, and it
exits 0 in bounded time."""

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.helpers.app import assert_contract_error
from tests.helpers.kafka import records_of
from tests.helpers.load import post_audits, summary
from tests.helpers.service import Launch

DRAIN_S = 2.0


async def test_sigterm_under_load_keeps_every_accepted_event(
    kafka_bootstrap: str, tmp_path: Path, start_service: Launch
) -> None:
    service = await asyncio.to_thread(
        start_service, kafka_bootstrap, tmp_path, shutdown_drain_s=str(DRAIN_S)
    )
    await asyncio.to_thread(service.wait_ready)
    signalled = asyncio.Event()
    times: dict[str, float] = {}

    def answered(n: int) -> None:
        if n >= 400 and not signalled.is_set():
            signalled.set()
            times["sigterm"] = time.monotonic()
            service.process.send_signal(signal.SIGTERM)

    async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
        load = asyncio.gather(
            post_audits(client, 3000, prefix="acked", concurrency=8, answered=answered),
            post_audits(client, 3000, prefix="queued", concurrency=8, path="/audit?wait=false"),
        )
        await signalled.wait()
        exited = asyncio.create_task(asyncio.to_thread(exit_status, service.process))
        readyz = await client.get("/readyz")  # during the drain
        acked_run, queued_run = await load
    exit_code, exited_at = await exited
    exited_s = exited_at - times["sigterm"]
    answers = acked_run + queued_run

    accepted = [a for a in answers if a.status in (201, 202)]
    print(
        f"\n[fault] SIGTERM under load (16 concurrent, half ?wait=false, "
        f"RG_SHUTDOWN_DRAIN_S={DRAIN_S}): {summary(answers)}; exit {exit_code} "
        f"{exited_s:.1f}s after the signal"
    )
    assert exit_code == 0, service.log()
    assert exited_s < DRAIN_S + 30  # the drain, then in-flight requests (RG_SHUTDOWN_TIMEOUT_S)
    assert_contract_error(readyz, 503, "shutting_down")
    assert len(accepted) >= 400
    for answer in answers:
        if answer.status in (201, 202):
            continue
        if answer.status is not None:  # refused while draining
            assert answer.status == 503, answer
            assert answer.body["error"]["code"] == "shutting_down", answer
            assert answer.retry_after, answer
        else:  # the listener or an idle keep-alive connection closed: no answer, no promise
            assert answer.error, answer
    stored = {
        r.header("rg-event-id") for r in await records_of(kafka_bootstrap, service.audit_topic)
    }
    missing = [a.event_id for a in accepted if a.event_id not in stored]
    assert not missing, f"{len(missing)} accepted events not in Kafka: {missing[:5]}"
    assert "Traceback" not in service.log()


def exit_status(process: "subprocess.Popen[bytes]") -> tuple[int, float]:
    """Wait for the exit; its status and when it came."""
    code = process.wait(timeout=60)
    return code, time.monotonic()
