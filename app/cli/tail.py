"""Printing records as they arrive: the body of `ractogateway-kafka tail`."""

import asyncio
import base64
import signal
import sys
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from app.ingest.otlp_out import otlp_json_line
from app.kafka import KafkaConsumerClient, KafkaMessage


def _printable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(value).decode("ascii")
    return value


def as_json_line(message: KafkaMessage) -> str:
    """One record as a JSON object on one line (bytes as text, or `base64:` when binary)."""
    return orjson.dumps(
        {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp_ms": message.timestamp_ms,
            "key": _printable(message.key),
            "value": _printable(message.value),
            "headers": {name: _printable(value) for name, value in message.headers.items()},
            # Values in the Confluent wire format name their schema (RG_SCHEMA_REGISTRY_URL).
            **(
                {"schema_id": message.schema_id, "schema_version": message.schema_version}
                if message.schema_id is not None
                else {}
            ),
        }
    ).decode("utf-8")


def as_otlp_line(message: KafkaMessage) -> str:
    """One audit record as one line of OTLP JSON: an `ExportLogsServiceRequest` holding one
    GenAI event (see `app.ingest.otlp_out`); a value that is no record is printed as its text."""
    if not isinstance(message.value, dict):
        return as_json_line(message)
    headers = {name: text for name in message.headers if (text := message.header(name))}
    return otlp_json_line(message.value, headers)


# C0 and C1 control characters (and DEL) as `\xNN`, tab kept: a record's text reaches a
# terminal, and escape sequences in it could retitle, clear or recolour it, or fake a verdict.
_CONTROLS = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code != ord("\t")
}


def escape_controls(text: str) -> str:
    """`text` with its control characters (except tab) shown as `\\xNN`."""
    return text.translate(_CONTROLS)


def as_text_line(message: KafkaMessage) -> str:
    """One record for people: `topic[partition]@offset key=...: value`, control characters
    escaped."""
    value = message.value
    shown = value if isinstance(value, str) else orjson.dumps(_printable(value)).decode("utf-8")
    shown = escape_controls(shown)
    schema = ""
    if message.schema_id is not None:
        schema = f" schema={message.schema_id}/v{message.schema_version or '?'}"
    place = f"{message.topic}[{message.partition}]@{message.offset}"
    return f"{place} key={escape_controls(repr(message.key))}{schema}: {shown}"


async def tail(
    consumer: KafkaConsumerClient,
    *,
    out: TextIO,
    formatter: Callable[[KafkaMessage], str],
    max_messages: int | None = None,
    err: TextIO | None = None,
) -> int:
    """Print records until SIGINT/SIGTERM or `max_messages`; return how many were printed. A
    record whose value cannot be written out is printed with a note in its place (and said so
    on `err`, stderr by default): no record stops the tail."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    printed = 0
    async with consumer:
        while not stop.is_set() and (max_messages is None or printed < max_messages):
            for message in await consumer.poll(timeout_ms=500):
                print(_line(message, formatter, err or sys.stderr), file=out, flush=True)
                printed += 1
                if max_messages is not None and printed >= max_messages:
                    break
    return printed


def _line(message: KafkaMessage, formatter: Callable[[KafkaMessage], str], err: TextIO) -> str:
    # JSON nested deeper than orjson writes (255 levels; it reads up to 1,024) decodes but
    # does not print: the record is shown with a note as its value.
    try:
        return formatter(message)
    except Exception as exc:
        note = f"<not printable: {type(exc).__name__}: {exc}>"
        place = f"{message.topic}[{message.partition}]@{message.offset}"
        print(f"tail: the value at {place} is not printable ({exc})", file=err, flush=True)
        return formatter(message.model_copy(update={"value": note}))
