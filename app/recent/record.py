"""A record kept for `GET /messages` and how it is shown: `RecentRecord` holds it as read from
Kafka (value, key and headers as bytes, see app/recent/buffer.py), `MessageView` is what an
answer shows of it, worked out when it is served (`RecentRecord.json(coverage)`), and
`MessagesPage` is the page `RecentRecords.page` writes.
"""

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from app.kafka import KafkaMessage
from app.kafka.audit import SEQ_HEADER, WRITER_HEADER
from app.kafka.schemas import schema_id_of
from app.kafka.serde import CONTENT_TYPE, JSON_CONTENT_TYPE, decode_value
from app.kafka.stamps import utc_of_epoch_ms

# Per-record bookkeeping (the entry, its list slot, the headers' dict) on top of its bytes, and
# per header (the dict slot, the bytes objects).
_ENTRY_OVERHEAD = 300
_HEADER_OVERHEAD = 64
_WRITER = re.compile(r"[0-9a-f]{32}")
_SEQ = re.compile(r"0|[1-9][0-9]*")
# The end of a record's JSON for each answer of the coverage (replacing its closing brace).
_CHECKPOINTED = {
    True: b',"checkpointed":true}',
    False: b',"checkpointed":false}',
    None: b',"checkpointed":null}',
}

# Whether a signed checkpoint covers position `seq` of `writer`: None when unknown.
Coverage = Callable[[str, int], bool | None]


class MessageView(BaseModel):
    """A record as `GET /messages` shows it. `value` is the decoded JSON when the record is
    marked `content-type: application/json`, else text, else base64 (`value_encoding` says
    which); a key or header that is not UTF-8 is shown with `\\x..` escapes."""

    topic: str = Field(examples=["ractogateway.audit"])
    partition: int = Field(examples=[0])
    offset: int = Field(examples=[42])
    timestamp_ms: int | None = Field(examples=[1790000000000])
    timestamp_utc: str | None = Field(examples=["2026-09-21T12:00:00.000000Z"])
    key: str | None = Field(examples=["user-42"])
    value: Any = Field(examples=[{"user_id": "user-42", "model": "gpt-4o"}])
    value_encoding: Literal["json", "text", "base64", "tombstone"]
    headers: dict[str, str | None] = Field(examples=[{"content-type": "application/json"}])
    writer: str | None = Field(
        default=None,
        examples=["0123456789abcdef0123456789abcdef"],
        description="For an audit record: the writer whose hash chain holds it (rg-writer).",
    )
    seq: int | None = Field(
        default=None,
        examples=[41],
        description="For an audit record: its position on its writer's chain (rg-seq).",
    )
    schema_id: int | None = Field(
        default=None,
        examples=[7],
        description="For a value in the Confluent wire format (RG_SCHEMA_WIRE_FORMAT=confluent): "
        "the Schema Registry's id of its schema; `value` is the JSON after the 5-byte header.",
    )
    schema_version: int | None = Field(
        default=None,
        examples=[2],
        description="The version of that schema under its subject, when the registry told.",
    )
    checkpointed: bool | None = Field(
        default=None,
        examples=[True],
        description=(
            "For an audit record: true once a signed checkpoint this service knows covers its "
            "seq (its own, or one read from the checkpoints topic whose signature verifies with "
            "a key of GET /audit/keys), false while the checkpoints known of its writer stop "
            "below it. null when unknown: no signing key, no checkpoint known of its writer, "
            "or not an audit record. Worked out when the record is served."
        ),
    )

    @classmethod
    def of(cls, message: KafkaMessage) -> "MessageView":
        """The view of a record read with `value_format="bytes"` (or `"auto"`: a value still in
        bytes then is neither JSON nor text, and decoding it again changes nothing)."""
        return cls(
            **view_fields(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                timestamp_ms=message.timestamp_ms,
                key=_shown_key(message.key),
                value=message.value,
                headers=message.headers,
            )
        )


class MessagesPage(BaseModel):
    """The newest records first, and how many there are."""

    messages: list[MessageView]
    count: int


def view_fields(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: str | None,
    value: Any,
    headers: Mapping[str, bytes | None],
    schema_versions: Mapping[int, int] | None = None,
    chained: bool = True,
) -> dict[str, Any]:
    """A `MessageView`'s fields, in its order and without `checkpointed`, as JSON types: a
    value in bytes is decoded as `value_format="auto"` says (JSON when marked
    `content-type: application/json`, else UTF-8 text, else base64); a framed value's schema id
    is shown, with its version when `schema_versions` knows it; `writer` and `seq` only when
    `chained` (a record of the audit topic)."""
    schema_id = None
    if isinstance(value, bytes):
        schema_id = schema_id_of(value)
        value = decode_value(value, headers, "auto")
    encoding: Literal["json", "text", "base64", "tombstone"]
    if value is None:
        encoding = "tombstone"
    elif isinstance(value, bytes):
        value, encoding = base64.b64encode(value).decode("ascii"), "base64"
    elif (headers.get(CONTENT_TYPE) or b"").startswith(JSON_CONTENT_TYPE.encode()):
        encoding = "json"
    else:
        encoding = "text"
    writer, seq = _chain_place(headers) if chained else (None, None)
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp_ms": timestamp_ms,
        "timestamp_utc": utc_of_epoch_ms(timestamp_ms) if timestamp_ms is not None else None,
        "key": key,
        "value": value,
        "value_encoding": encoding,
        "headers": {
            name: raw.decode("utf-8", "backslashreplace") if raw is not None else None
            for name, raw in headers.items()
        },
        "writer": writer,
        "seq": seq,
        "schema_id": schema_id,
        "schema_version": (schema_versions or {}).get(schema_id) if schema_id is not None else None,
    }


def _shown_key(key: str | bytes | None) -> str | None:
    return key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key


def _chain_place(headers: Mapping[str, bytes | None]) -> tuple[str | None, int | None]:
    # Shown only when both headers are well formed (docs/integrity.md); anything else is the
    # verifier's to report, not the view's to guess.
    writer, seq = _text(headers.get(WRITER_HEADER)), _text(headers.get(SEQ_HEADER))
    if writer is None or seq is None or not _WRITER.fullmatch(writer) or not _SEQ.fullmatch(seq):
        return None, None
    return writer, int(seq)


def _text(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", errors="replace") if raw is not None else None


@dataclass(slots=True, eq=False)
class RecentRecord:
    """One kept record: the fields the filters look at, and its value and headers as read
    (bytes, decoded only when the record is served)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: str | None
    value: bytes | None
    headers: dict[str, bytes | None]
    # What the record counts against the byte bound.
    size: int
    # Its view's JSON without `checkpointed`, kept once GET /messages has shown it (and
    # counted in `size`): see `RecentRecords.shown`.
    shown: bytes | None = None
    # Its place on a writer's chain, worked out with `shown`.
    writer: str | None = None
    seq: int | None = None
    # A record of the audit topic: only those show a place on a chain (`rg-writer`, `rg-seq`).
    # Records of other topics may carry any headers their publisher chose.
    chained: bool = False
    # Its timestamp for ordering, at most the time it was read: a record stamped in the future
    # is not newer than the records read after it (and cannot push them out).
    rank_ms: int = 0

    @classmethod
    def of(cls, message: KafkaMessage, *, chained: bool, rank_ms: int) -> "RecentRecord":
        """`message` (read with `value_format="bytes"`) kept as read, with its size as the
        buffer's bounds count it."""
        value = _raw(message.value)
        key = _shown_key(message.key)
        headers = message.headers
        return cls(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=message.timestamp_ms,
            key=key,
            value=value,
            headers=headers,
            chained=chained,
            rank_ms=rank_ms,
            size=_ENTRY_OVERHEAD
            + len(value or b"")
            + len(key or "")
            + _HEADER_OVERHEAD * len(headers)
            + sum(map(len, headers))
            + sum(map(len, filter(None, headers.values()))),
        )

    @property
    def order(self) -> tuple[int, int, int]:
        """Oldest first: by timestamp (capped at the time read), then partition and offset."""
        return (self.rank_ms, self.partition, self.offset)

    def chain_place(self) -> tuple[str | None, int | None]:
        """Its writer and seq: from its headers for a record of the audit topic, else none."""
        return _chain_place(self.headers) if self.chained else (None, None)

    def view_json(self, schema_versions: Mapping[int, int] | None = None) -> bytes:
        """The record's `MessageView` as JSON, without `checkpointed`: decoded now unless
        kept from an earlier answer."""
        if self.shown is not None:
            return self.shown
        fields = view_fields(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            timestamp_ms=self.timestamp_ms,
            key=self.key,
            value=self.value,
            headers=self.headers,
            schema_versions=schema_versions,
            chained=self.chained,
        )
        # orjson: pydantic's JSON of a 0.5 MB value takes 1 ms of the event loop; the values
        # are decoded JSON or text, all of which orjson writes, except JSON nested deeper than
        # orjson writes (255 levels; it reads up to 1,024): that one is shown as its text.
        try:
            return orjson.dumps(fields)
        except orjson.JSONEncodeError:
            fields.update(_as_text(self.value))
            return orjson.dumps(fields)

    def json_parts(
        self,
        coverage: Coverage,
        schema_versions: Mapping[int, int] | None = None,
        *,
        view: bytes | None = None,
    ) -> tuple[memoryview, bytes]:
        """The record as `GET /messages` shows it (a `MessageView`), with `checkpointed` as
        `coverage` says now (null without a writer and seq), in two pieces to join: a
        memoryview, so the view is copied once, by the join of the whole answer. `view`: the
        view's JSON worked out by the caller (opened sealed fields), when not kept."""
        if self.shown is not None:
            writer, seq = self.writer, self.seq
        else:
            writer, seq = self.chain_place()
        covered = None if writer is None or seq is None else coverage(writer, seq)
        body = view if view is not None else self.view_json(schema_versions)
        return memoryview(body)[:-1], _CHECKPOINTED[covered]

    def json(self, coverage: Coverage, schema_versions: Mapping[int, int] | None = None) -> bytes:
        """The record's JSON as `GET /messages` shows it (see `json_parts`)."""
        return b"".join(self.json_parts(coverage, schema_versions))


def _as_text(value: bytes | None) -> dict[str, Any]:
    # A value shown as it is rather than decoded: UTF-8 text, else base64.
    raw = value or b""
    try:
        return {"value": raw.decode("utf-8"), "value_encoding": "text"}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(raw).decode("ascii"), "value_encoding": "base64"}


def _raw(value: Any) -> bytes | None:
    # The reader's records hold bytes; a value decoded already (a record read with
    # `value_format="auto"`) is kept as the bytes it came from, near enough: text as UTF-8,
    # anything else as JSON.
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return orjson.dumps(value)
