"""RG_REQUEST_READ_TIMEOUT_S bounds the client, never the service: with Kafka stopped, POST
/audit waits RG_PRODUCE_TIMEOUT_S (longer than the read timeout) and then answers, also for a
pipelined request held back behind it."""

import asyncio
import json
import re
import socket
import time
from pathlib import Path

from app.embedded import EmbeddedKafka
from tests.helpers.broker import in_thread_stop
from tests.helpers.kafka import new_topic
from tests.helpers.load import audit_event
from tests.helpers.service import Launch

READ_TIMEOUT_S = 1.0
PRODUCE_TIMEOUT_S = 3.0


def post(index: int) -> bytes:
    body = json.dumps(audit_event(index, prefix="slow-handler")).encode()
    return (
        b"POST /audit HTTP/1.1\r\nHost: rg\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def answers_to(port: int, parts: list[bytes], count: int) -> tuple[list[int], float]:
    """Send `parts` on one connection, 0.3 s apart; the statuses of the first `count`
    answers and the seconds they took."""
    status_line = re.compile(rb"HTTP/1\.1 (\d{3}) ")  # answers follow bodies with no newline
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        for i, part in enumerate(parts):
            if i:
                time.sleep(0.3)
            connection.sendall(part)
        received = b""
        while len(status_line.findall(received)) < count:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    statuses = [int(s) for s in status_line.findall(received)]
    return statuses, time.monotonic() - started


async def test_a_handler_slower_than_the_read_timeout_is_not_cut(
    own_broker: EmbeddedKafka, tmp_path: Path, start_service: Launch
) -> None:
    bootstrap = own_broker.bootstrap_servers
    service = start_service(
        bootstrap,
        tmp_path,
        audit_topic=await new_topic(bootstrap),
        request_read_timeout_s=str(READ_TIMEOUT_S),
        produce_timeout_s=str(PRODUCE_TIMEOUT_S),
    )
    await asyncio.to_thread(service.wait_ready)
    port = int(service.url.rsplit(":", 1)[1])
    statuses, _ = await asyncio.to_thread(answers_to, port, [post(0)], 1)
    assert statuses == [201]
    await in_thread_stop(own_broker)

    # Alone, and two pipelined on one connection: once the second one's head is in, the
    # service reads nothing more (its body included) until the first is answered.
    head, _, body = post(3).partition(b"\r\n\r\n")
    (alone, alone_s), (pipelined, pipelined_s) = await asyncio.gather(
        asyncio.to_thread(answers_to, port, [post(1)], 1),
        asyncio.to_thread(answers_to, port, [post(2), head + b"\r\n\r\n", body], 2),
    )
    print(
        f"\nKafka stopped, RG_PRODUCE_TIMEOUT_S={PRODUCE_TIMEOUT_S}, "
        f"RG_REQUEST_READ_TIMEOUT_S={READ_TIMEOUT_S}: alone {alone} in {alone_s:.1f}s, "
        f"pipelined {pipelined} in {pipelined_s:.1f}s"
    )
    for status in alone + pipelined:
        assert status == 503  # Kafka's answer (kafka_timeout), not 408
    assert len(alone) == 1
    assert len(pipelined) == 2
    assert "request cut off" not in service.log()
