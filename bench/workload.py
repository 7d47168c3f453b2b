"""The one audit event every line sends: HTTP bodies for wrk (one event, a batch of them, the
event as a record to publish) and the Kafka record for the raw producers, built from the same
fields so every line moves the same bytes."""

import json
from dataclasses import dataclass
from typing import Any

from app.kafka import KafkaAuditEvent
from app.kafka.audit import DIGEST_HEADER, EVENT_ID_HEADER, SCHEMA_VERSION_HEADER
from app.kafka.serde import CONTENT_TYPE, JSON_CONTENT_TYPE

TEXT_CHARS = 1024

_PROMPT_SENTENCE = (
    "Summarise the customer's last three support tickets and suggest the next best action. "
)
_RESPONSE_SENTENCE = (
    "The customer reported two delayed shipments and one refund; offer a voucher and a call. "
)


def _text_of(sentence: str, chars: int = TEXT_CHARS) -> str:
    """`sentence` repeated and cut to exactly `chars` characters: a realistic ~1 KB turn."""
    repeats = chars // len(sentence) + 1
    return (sentence * repeats)[:chars]


def event_fields() -> dict[str, Any]:
    """The fields a client sends; the service fills `event_id` and `timestamp_utc`, so the
    same body can be posted again and again."""
    return {
        "user_id": "bench-user-42",
        "model": "gpt-4o",
        "prompt": _text_of(_PROMPT_SENTENCE),
        "response": _text_of(_RESPONSE_SENTENCE),
        "request_id": "bench-request",
        "metadata": {"app": "bench", "tokens": 512, "temperature": 0.2},
    }


def http_body() -> str:
    """The JSON body of `POST /audit` (ASCII only, so it embeds safely in a Lua string)."""
    return json.dumps(event_fields(), ensure_ascii=True, separators=(",", ":"))


def batch_body(events: int) -> str:
    """The JSON body of `POST /audit/batch`: the same event `events` times."""
    return json.dumps(
        {"events": [event_fields()] * events}, ensure_ascii=True, separators=(",", ":")
    )


def publish_body(topic: str) -> str:
    """The JSON body of `POST /publish`: the event's fields as the value, keyed by user."""
    fields = event_fields()
    return json.dumps(
        {"topic": topic, "key": fields["user_id"], "value": fields},
        ensure_ascii=True,
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class KafkaRecord:
    """Exactly what the service hands its producer for one audit event."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def kafka_record() -> KafkaRecord:
    """Key, canonical JSON value and the four audit headers, as `KafkaAuditLogger` writes them."""
    event = KafkaAuditEvent(**event_fields())
    value = event.canonical_json()
    headers = {
        CONTENT_TYPE: JSON_CONTENT_TYPE,
        EVENT_ID_HEADER: event.event_id,
        DIGEST_HEADER: event.digest(),
        SCHEMA_VERSION_HEADER: str(event.schema_version),
    }
    return KafkaRecord(
        key=event.user_id.encode("utf-8"),
        value=value,
        headers=[(name, text.encode("utf-8")) for name, text in headers.items()],
    )
