"""An audit event's receipt, how receipts are kept packed for retries, and the key a receipt is
kept under (`request_of`): what `AuditTrail` answers with and what a retry finds again."""

import struct
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from app.ingest.idempotency import ReceiptCodec, fingerprint
from app.kafka import KafkaAuditEvent, KafkaProduceResult
from app.kafka.serde import canonical_json

ReceiptStatus = Literal["acked", "queued", "spooled"]


class AuditReceipt(BaseModel):
    """Proof that an audit event was accepted: where Kafka stored it (once acknowledged) and
    the digest of the stored bytes, to verify the record later."""

    event_id: str = Field(examples=["01927f0e-8a1c-7cc2-9a53-3f1c2b6f6d0e"])
    topic: str = Field(examples=["ractogateway.audit"])
    partition: int | None = Field(examples=[0])
    offset: int | None = Field(examples=[1234])
    timestamp_utc: str = Field(examples=["2026-09-21T12:00:00.000000Z"])
    digest: str = Field(examples=["sha256:9f2c..."], pattern=r"^sha256:[0-9a-f]{64}$")
    writer: str = Field(
        examples=["0123456789abcdef0123456789abcdef"],
        pattern=r"^[0-9a-f]{32}$",
        description="The writer (service instance) whose hash chain holds the record: its "
        "rg-writer header (docs/integrity.md).",
    )
    seq: int = Field(
        examples=[41],
        ge=0,
        description="The record's position on its writer's chain: its rg-seq header.",
    )
    chain: str = Field(
        examples=["sha256:77e58d19ca3a29becb657e7a3b8fea3f63f6d6304aab8aa29dce4bb607fedb6f"],
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="The record's chain link, committing to every earlier record of its "
        "writer: its rg-chain header.",
    )
    status: ReceiptStatus = Field(
        description="acked: Kafka has it (acks=all); queued: handed to the producer, not yet "
        "acknowledged (?wait=false); spooled: kept on local disk until Kafka is back."
    )

    @classmethod
    def made(
        cls,
        *,
        event_id: str,
        topic: str,
        partition: int | None,
        offset: int | None,
        timestamp_utc: str,
        digest: str,
        writer: str,
        seq: int,
        chain: str,
        status: ReceiptStatus,
    ) -> "AuditReceipt":
        """A receipt of values the service made (the digest, the chain's hex, Kafka's place):
        not validated, as `model_construct` would make it without its generic passes over the
        fields (a receipt per event: they cost 3 of its 4 us)."""
        receipt = _new(cls)
        _set(
            receipt,
            "__dict__",
            {
                "event_id": event_id,
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "timestamp_utc": timestamp_utc,
                "digest": digest,
                "writer": writer,
                "seq": seq,
                "chain": chain,
                "status": status,
            },
        )
        _set(receipt, "__pydantic_fields_set__", set(_RECEIPT_FIELDS))
        _set(receipt, "__pydantic_extra__", None)
        _set(receipt, "__pydantic_private__", None)
        return receipt

    def acked(self, result: KafkaProduceResult) -> "AuditReceipt":
        """This receipt once Kafka acknowledged its record at `result`'s place."""
        fields = dict(self.__dict__)
        fields["partition"], fields["offset"] = result.partition, result.offset
        fields["status"] = "acked"
        acked = _new(AuditReceipt)  # as `made()` makes one, without its keywords
        _set(acked, "__dict__", fields)
        _set(acked, "__pydantic_fields_set__", set(_RECEIPT_FIELDS))
        _set(acked, "__pydantic_extra__", None)
        _set(acked, "__pydantic_private__", None)
        return acked


_RECEIPT_FIELDS = frozenset(AuditReceipt.model_fields)
_new, _set = object.__new__, object.__setattr__


class _PackedReceipts:
    """Receipts kept for retries, packed into about 190 bytes each (their JSON took 420, the
    model object 1,600): the digest and the chain link as their 32 raw bytes, the numbers in
    fixed fields, the topic and the writer as indexes into a small table (one audit topic, one
    writer per process: a few names at most). A receipt whose names would overflow the table is
    kept as its JSON instead."""

    _FIXED = struct.Struct("<BBBqqq32s32sH")  # topic, writer, status, partition, offset, seq,
    # digest, chain, length of the timestamp; then the timestamp and the event id (UTF-8)
    _STATUSES: tuple[ReceiptStatus, ...] = ("acked", "queued", "spooled")
    _MAX_NAMES = 255
    _PACKED, _JSON = b"P", b"J"

    def __init__(self) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}

    def _name(self, name: str) -> int | None:
        if (known := self._index.get(name)) is not None:
            return known
        if len(self._names) >= self._MAX_NAMES:
            return None
        self._index[name] = len(self._names)
        self._names.append(name)
        return self._index[name]

    def pack(self, receipt: AuditReceipt) -> bytes:
        """The receipt as bytes (see the class)."""
        topic, writer = self._name(receipt.topic), self._name(receipt.writer)
        if topic is None or writer is None:
            return self._JSON + AuditReceipt.__pydantic_serializer__.to_json(receipt)
        stamp = receipt.timestamp_utc.encode()
        fixed = self._FIXED.pack(
            topic,
            writer,
            self._STATUSES.index(receipt.status),
            -1 if receipt.partition is None else receipt.partition,
            -1 if receipt.offset is None else receipt.offset,
            receipt.seq,
            bytes.fromhex(receipt.digest.removeprefix("sha256:")),
            bytes.fromhex(receipt.chain.removeprefix("sha256:")),
            len(stamp),
        )
        return self._PACKED + fixed + stamp + receipt.event_id.encode()

    def unpack(self, stored: bytes) -> AuditReceipt:
        """The receipt `pack` made these bytes of."""
        if stored[:1] == self._JSON:
            return AuditReceipt.model_validate_json(stored[1:])
        end = 1 + self._FIXED.size
        topic, writer, status, partition, offset, seq, digest, chain, stamp_len = (
            self._FIXED.unpack(stored[1:end])
        )
        return AuditReceipt.made(
            event_id=stored[end + stamp_len :].decode(),
            topic=self._names[topic],
            partition=None if partition < 0 else partition,
            offset=None if offset < 0 else offset,
            timestamp_utc=stored[end : end + stamp_len].decode(),
            digest="sha256:" + digest.hex(),
            writer=self._names[writer],
            seq=seq,
            chain="sha256:" + chain.hex(),
            status=self._STATUSES[status],
        )


def receipt_codec() -> ReceiptCodec[AuditReceipt]:
    """How a trail's kept receipts are stored: packed (see `_PackedReceipts`)."""
    packed = _PackedReceipts()
    return ReceiptCodec(pack=packed.pack, unpack=packed.unpack)


@dataclass(frozen=True, slots=True)
class AuditRequest:
    """What names an audit request for retries: its key, the fingerprint of its body, and
    how an error names the key (message and field)."""

    key: str
    fingerprint: bytes
    name: str
    field: str


def request_of(event: KafkaAuditEvent, caller: str, idempotency_key: str | None) -> AuditRequest:
    """How `caller`'s `event` is known to retries: by `idempotency_key`, else by its event_id."""
    # Keys are the caller's own (IETF Idempotency-Key: unique per client): another caller's
    # event with the same id is its own record, not a replay. The fingerprint is of the fields
    # as sent (before redaction; not the event_id or time the service filled in, nor the
    # event_id that is the key itself), so a retry of the same body matches whatever the
    # service chose the first time.
    sent = event.model_fields_set
    if idempotency_key:
        body = canonical_json(event.sent_fields(sent))
        return AuditRequest(
            f"{caller}|key:{idempotency_key}",
            fingerprint(body),
            f"Idempotency-Key {idempotency_key!r}",
            "header.idempotency-key",
        )
    body = canonical_json(event.sent_fields(sent - {"event_id"}))
    return AuditRequest(
        f"{caller}|event:{event.event_id}",
        fingerprint(body),
        f"event_id {event.event_id!r}",
        "body.event_id",
    )
