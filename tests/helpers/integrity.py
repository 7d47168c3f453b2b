"""Audit trails built by hand from the integrity spec (not from the service's code): chained
records, the writers' Merkle trees, signed checkpoints (versions 1 and 2, with their C2SP notes),
and an independent producer that writes them to a topic."""

import base64
import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Record:
    """One audit record as it goes to Kafka; partition/offset set once written."""

    value: bytes
    headers: Headers
    key: bytes | None = None
    partition: int | None = None
    offset: int | None = None

    def header(self, name: str) -> str:
        """The text of header `name`."""
        return next(v.decode() for n, v in self.headers if n == name)


DOC = Path(__file__).parents[2] / "docs" / "integrity.md"


def doc_vector(heading: str) -> dict[str, Any]:
    """The first JSON block under the `## <heading>` of docs/integrity.md."""
    text = DOC.read_text(encoding="utf-8").split(f"\n## {heading}\n", 1)[1]
    match = re.search(r"```json\n(.*?)\n```", text, re.DOTALL)
    assert match is not None, heading
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def spec_leaf(writer: str, seq: int, digest_hex: str, schema_id: int | None = None) -> bytes:
    """The spec's leaf entry of a position (docs/integrity.md), written out here on its own;
    a framed value's schema id is its fifth line."""
    framed = "" if schema_id is None else f"\n{schema_id}"
    return f"rg-leaf-v1\n{writer}\n{seq}\n{digest_hex}{framed}".encode()


def spec_root(entries: list[bytes]) -> bytes:
    """RFC 6962's Merkle tree hash of `entries`, by its recursive definition (no app code)."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1 << ((len(entries) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + spec_root(entries[:k]) + spec_root(entries[k:])).digest()


def spec_link(writer: str, seq: int, prev: str, digest_hex: str) -> str:
    """The spec's link, written out here on its own so the tests do not trust app code."""
    return hashlib.sha256(
        f"rg-chain-v1\n{writer}\n{seq}\n{prev}\n{digest_hex}".encode()
    ).hexdigest()


@dataclass
class ChainedWriter:
    """A writer as the spec describes it: a random id, seqs 0, 1, 2, … and their links."""

    writer: str = field(default_factory=lambda: secrets.token_hex(16))
    seq: int = -1
    link: str = "0" * 64
    # The digest of every position, stored or lost: the tree's leaves.
    digests: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    # The schema id of every framed position (Confluent wire format), None for plain JSON.
    schema_ids: list[int | None] = field(default_factory=list)

    def record(self, body: dict[str, Any] | None = None, *, schema_id: int | None = None) -> Record:
        """The next record of this writer's chain; with `schema_id`, in the Confluent wire
        format (0x00, the id in 4 bytes big-endian, the JSON) with its `rg-schema-id`."""
        event = body or {"event_id": str(uuid.uuid4()), "prompt": "hello", "response": "hi"}
        value = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        digest = hashlib.sha256(value).hexdigest()
        self._advance(digest, schema_id)
        headers = chain_headers(self.writer, self.seq, digest, self.link)
        if schema_id is None:
            return Record(value, headers)
        framed = b"\x00" + schema_id.to_bytes(4, "big") + value
        return Record(framed, [*headers, ("rg-schema-id", str(schema_id).encode())])

    def lose(self, *, schema_id: int | None = None) -> str:
        """A position whose record was lost for good (never written); its digest."""
        digest = hashlib.sha256(f"lost {self.writer} {self.seq + 1}".encode()).hexdigest()
        self._advance(digest, schema_id)
        return digest

    def _advance(self, digest: str, schema_id: int | None = None) -> None:
        self.seq += 1
        self.link = spec_link(self.writer, self.seq, self.link, digest)
        self.digests.append(digest)
        self.links.append(self.link)
        self.schema_ids.append(schema_id)

    def tree(self, seq: int | None = None) -> bytes:
        """The root of this writer's tree over positions 0..seq (default: all)."""
        last = self.seq if seq is None else seq
        return spec_root(
            [
                spec_leaf(self.writer, n, self.digests[n], self.schema_ids[n])
                for n in range(last + 1)
            ]
        )

    def records(self, count: int) -> list[Record]:
        """`count` next records."""
        return [self.record() for _ in range(count)]


def chain_headers(writer: str, seq: int, digest_hex: str, link: str) -> Headers:
    """The headers of an audit record at (writer, seq)."""
    return [
        ("content-type", b"application/json"),
        ("rg-digest", f"sha256:{digest_hex}".encode()),
        ("rg-writer", writer.encode()),
        ("rg-seq", str(seq).encode()),
        ("rg-chain", f"sha256:{link}".encode()),
    ]


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key pair and its id (the spec's derivation unless given)."""

    private: Ed25519PrivateKey
    key_id: str

    @classmethod
    def generate(cls, key_id: str | None = None) -> "SigningKey":
        """A new key pair."""
        private = Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(private, key_id or hashlib.sha256(raw).hexdigest()[:16])

    def public_pem(self) -> bytes:
        """The public key in PEM (SubjectPublicKeyInfo)."""
        return self.private.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )

    def private_pem(self) -> bytes:
        """The private key in PEM (PKCS#8)."""
        return self.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def write_public(self, folder: Path, name: str | None = None) -> Path:
        """Write the public key as `<name or key_id>.pub.pem`; return its path."""
        path = folder / (name or f"{self.key_id}.pub.pem")
        path.write_bytes(self.public_pem())
        return path

    def checkpoint(
        self, writer: ChainedWriter, void: dict[int, str] | None = None, *, at: str | None = None
    ) -> dict[str, Any]:
        """A signed checkpoint of `writer`'s chain as it stands (stamped now, or `at`)."""
        body: dict[str, Any] = {
            "version": 1,
            "writer": writer.writer,
            "seq": writer.seq,
            "count": writer.seq + 1,
            "chain": f"sha256:{writer.link}",
            "time": at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "key_id": self.key_id,
            "void": {str(s): f"sha256:{link}" for s, link in (void or {}).items()},
        }
        return self.resign(body)

    def resign(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """`checkpoint` (its fields as they are, whatever they say) with this key's signature."""
        body = {k: v for k, v in checkpoint.items() if k != "signature"}
        signed = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        signature = self.private.sign(signed.encode())
        return {**body, "signature": base64.urlsafe_b64encode(signature).rstrip(b"=").decode()}


def keyed(checkpoint: dict[str, Any]) -> bytes:
    """The Kafka key of a checkpoint's record: its writer id."""
    return str(checkpoint["writer"]).encode()


def spec_note(text: str, name: str, private: Ed25519PrivateKey) -> str:
    """`text` as a C2SP signed note with one Ed25519 signature line named `name`."""
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_hash = hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]
    signature = base64.b64encode(key_hash + private.sign(text.encode())).decode()
    return f"{text}\n\u2014 {name} {signature}\n"


def spec_verifier_key(name: str, private: Ed25519PrivateKey) -> str:
    """The C2SP verifier key of `private`'s public key under the key name `name`."""
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_hash = hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]
    encoded = base64.b64encode(b"\x01" + raw).decode()
    return f"{name}+{key_hash.hex()}+{encoded}"


ORIGIN = "example.test/audit"


def sign_json(private: Ed25519PrivateKey, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with its `signature`: Ed25519 over its canonical JSON without it."""
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    signed = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signature = base64.urlsafe_b64encode(private.sign(signed.encode())).rstrip(b"=").decode()
    return {**unsigned, "signature": signature}


def checkpoint_v2(
    key: "SigningKey",
    writer: ChainedWriter,
    void: dict[int, str] | None = None,
    *,
    seq: int | None = None,
    tree: bytes | None = None,
    origin: str = ORIGIN,
    at: str | None = None,
) -> dict[str, Any]:
    """A signed version 2 checkpoint of `writer` at `seq` (default: where it stands): its
    tree's root (or `tree`), `void` (seq -> digest) and the C2SP note of the tree head."""
    last = writer.seq if seq is None else seq
    root = writer.tree(last) if tree is None else tree
    text = f"{origin}/writer/{writer.writer}\n{last + 1}\n{base64.b64encode(root).decode()}\n"
    body: dict[str, Any] = {
        "version": 2,
        "writer": writer.writer,
        "seq": last,
        "count": last + 1,
        "chain": f"sha256:{writer.links[last]}",
        "tree": f"sha256:{root.hex()}",
        "time": at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "key_id": key.key_id,
        "void": {str(s): f"sha256:{digest}" for s, digest in sorted((void or {}).items())},
        "note": spec_note(text, origin, key.private),
    }
    return sign_json(key.private, body)


def checkpoint_record(checkpoint: dict[str, Any]) -> Record:
    """A checkpoint as a record of the checkpoints topic (key: the writer id)."""
    return Record(
        json.dumps(checkpoint).encode(),
        [("content-type", b"application/json")],
        key=keyed(checkpoint),
    )


def with_value(record: Record, value: bytes) -> Record:
    """The record with its value rewritten and its headers kept."""
    return replace(record, value=value, partition=None, offset=None)


async def write_records(
    bootstrap: str, topic: str, records: list[Record], *, partitions: int = 1
) -> list[Record]:
    """Produce the records in order (record i to partition i % partitions unless keyed), with
    an independent aiokafka producer; return them with their partition and offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        written = []
        for i, record in enumerate(records):
            meta = await producer.send_and_wait(
                topic,
                record.value,
                key=record.key,
                headers=record.headers,
                partition=i % partitions,
            )
            written.append(replace(record, partition=meta.partition, offset=meta.offset))
        return written
    finally:
        await producer.stop()


def receipt_of(record: Record, topic: str) -> dict[str, Any]:
    """The receipt a client keeps for a written record (the fields `verify --receipt` checks)."""
    return {
        "event_id": json.loads(record.value).get("event_id", ""),
        "topic": topic,
        "partition": record.partition,
        "offset": record.offset,
        "digest": record.header("rg-digest"),
        "writer": record.header("rg-writer"),
        "seq": int(record.header("rg-seq")),
        "chain": record.header("rg-chain"),
        "status": "acked",
    }


def edge_cases(body: dict[str, Any]) -> dict[str, tuple[bytes, str]]:
    """The signed edge cases of the outside verifier's review (spec review 3, §5): a record value
    for the checkpoints topic, and what verify makes of it."""
    sig = body["signature"]
    link = body["chain"]
    standard = base64.b64encode(base64.urlsafe_b64decode(sig + "==")).decode()
    void = body["void"]

    def dumped(value: dict[str, Any], **options: Any) -> bytes:
        return json.dumps(value, **options).encode()

    without = {k: v for k, v in body.items() if k not in {"time"}}
    return {
        "control": (dumped(body), "clean"),
        "value-not-canonical": (dumped(body, indent=2), "clean"),
        "count-not-seq-plus-1": (dumped({**body, "count": body["count"] - 1}), "malformed"),
        "sig-padded": (dumped({**body, "signature": sig + "=="}), "malformed"),
        "sig-junk-chars": (dumped({**body, "signature": sig[:40] + "!*" + sig[42:]}), "malformed"),
        "sig-std-base64": (dumped({**body, "signature": standard}), "malformed"),
        "void-bare-hex": (dumped({**body, "void": {"2": void["2"][7:]}}), "malformed"),
        "void-key-leading-zero": (dumped({**body, "void": {"02": void["2"]}}), "malformed"),
        "no-time-field": (dumped(without), "malformed"),
        "no-void-field": (dumped({k: v for k, v in body.items() if k != "void"}), "malformed"),
        "chain-uppercase-hex": (dumped({**body, "chain": link.upper()}), "malformed"),
        "extra-field": (dumped({**body, "note": "\x01\x7f\u2028<&>"}), "malformed"),
    }


def writers_entry(kind: str, writer: ChainedWriter, size: int | None = None) -> Record:
    """An entry of the log of writers as the spec writes it (docs/integrity.md, "The log of
    writers"): start, or head/stop at `size` (default: where the writer stands), keyed by the
    writer id."""
    body: dict[str, Any] = {
        "kind": kind,
        "writer": writer.writer,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if kind == "start":
        body["origin"] = f"{ORIGIN}/writer/{writer.writer}"
    else:
        count = writer.seq + 1 if size is None else size
        body["size"] = count
        body["root"] = "sha256:" + writer.tree(count - 1).hex()
    value = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return Record(value, [("content-type", b"application/json")], key=writer.writer.encode())


async def read_raw(bootstrap: str, topic: str) -> list[Record]:
    """Every record of `topic` as stored (bytes, headers in order, key), partition by partition
    in offset order: what a copy of the topic writes again."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415

    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        ids = await consumer._client._wait_on_metadata(topic)  # aiokafka has no public form
        partitions = [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[Record] = []
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                found += [
                    Record(
                        r.value or b"",
                        list(r.headers),
                        key=r.key,
                        partition=r.partition,
                        offset=r.offset,
                    )
                    for r in batch.get(tp, [])
                ]
        return found
    finally:
        await consumer.stop()
