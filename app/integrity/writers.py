"""The log of writers: every writer's start, progress and stop on one single-partition topic,
so that no writer can vanish unseen (docs/integrity.md, "The log of writers").

An entry is the canonical JSON (sorted keys, "," and ":", UTF-8) of one of

    {"kind": "start", "writer", "time", "origin"}
    {"kind": "head",  "writer", "time", "size", "root": "sha256:<hex>"}
    {"kind": "stop",  "writer", "time", "size", "root": "sha256:<hex>"}

written keyed by the writer id. `origin` is the writer's log (`<name>/writer/<writer id>`),
`size` and `root` its tree's durable head (size = seq + 1). The topic has one partition, so its
offsets are one order every reader sees alike: leaf i of the writers' tree is the record value at
offset i (leaf_hash of the bytes as stored), and its checkpoint notes have the origin
`<name>/writers`. Signed notes of that tree are kept on the checkpoints topic keyed `writers`,
in a small signed envelope (`WritersNote`). Pure code: the service and `verify` import it.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.checkpoint import (
    CHAIN_PREFIX,
    MAX_BYTES,
    b64url,
    canonical_json,
    unb64url,
)
from app.integrity.note import NoteError, TreeHead, Verifier, open_note, parse_note, sign_note

KINDS = ("start", "head", "stop")
# The Kafka key of the writers log's notes on the checkpoints topic (a writer id is 32 hex).
WRITERS_KEY = "writers"
# The Kafka key of the timestamp tokens over those notes (app/integrity/timestamp.py).
TIMESTAMPS_KEY = "timestamps"
# A witness's cosignature of a note of the log of writers (app/integrity/witness.py).
COSIGNATURES_KEY = "cosignatures"
_ASIDE = frozenset(
    key for text in (WRITERS_KEY, TIMESTAMPS_KEY, COSIGNATURES_KEY) for key in (text, text.encode())
)
_WRITER = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def keyed_aside(key: str | bytes | None) -> bool:
    """True for a record of the checkpoints topic that is no writer's checkpoint: a note of
    the log of writers, a timestamp token or a witness's cosignature (keyed `writers`,
    `timestamps`, `cosignatures`)."""
    return key in _ASIDE


class WritersFormatError(ValueError):
    """A record of the writers topic (or a writers note) that is not what the spec says."""


def writers_log(name: str) -> str:
    """The origin of the log of writers under the log origin `name`: `<name>/writers`."""
    return f"{name}/writers"


@dataclass(frozen=True)
class WriterEntry:
    """One entry of the log of writers; `size` -1 and `root` empty for a start."""

    kind: str
    writer: str
    time: str
    origin: str = ""
    size: int = -1
    root: str = ""  # 64 hex

    def as_json(self) -> dict[str, Any]:
        """The entry's JSON object."""
        fields: dict[str, Any] = {"kind": self.kind, "writer": self.writer, "time": self.time}
        if self.kind == "start":
            fields["origin"] = self.origin
        else:
            fields["size"] = self.size
            fields["root"] = CHAIN_PREFIX + self.root
        return fields

    def to_bytes(self) -> bytes:
        """The record value: canonical JSON."""
        return canonical_json(self.as_json())

    @classmethod
    def from_json(cls, data: bytes | None) -> "WriterEntry":
        """Parse a record value strictly; WritersFormatError for anything else."""
        if data is None or len(data) > MAX_BYTES:
            raise WritersFormatError("not an entry of the log of writers (no value or too long)")
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise WritersFormatError(f"not JSON: {str(exc)[:80]}") from exc
        if not isinstance(value, dict) or value.get("kind") not in KINDS:
            raise WritersFormatError("not an entry: kind is not start, head or stop")
        kind = value["kind"]
        expected = {"kind", "writer", "time"} | (
            {"origin"} if kind == "start" else {"size", "root"}
        )
        if value.keys() != expected:
            raise WritersFormatError(f"a {kind} entry has exactly the fields {sorted(expected)}")
        writer, time = value["writer"], value["time"]
        if not (isinstance(writer, str) and _WRITER.fullmatch(writer)):
            raise WritersFormatError("writer is not 32 lowercase hex digits")
        if not isinstance(time, str):
            raise WritersFormatError("time is not a string")
        if kind == "start":
            if not isinstance(value["origin"], str):
                raise WritersFormatError("origin is not a string")
            return cls(kind, writer, time, origin=value["origin"])
        size, root = value["size"], value["root"]
        if type(size) is not int or size < 0:
            raise WritersFormatError("size is not a non-negative integer")
        if not (
            isinstance(root, str) and root.startswith(CHAIN_PREFIX) and _HEX64.fullmatch(root, 7)
        ):
            raise WritersFormatError("root is not sha256:<64 lowercase hex>")
        return cls(kind, writer, time, size=size, root=root[7:])


@dataclass(frozen=True)
class WritersNote:
    """A signed checkpoint of the log of writers as kept on the checkpoints topic:
    `{"version": 2, "log": "writers", "size", "root": "sha256:<hex>", "time", "key_id", "note",
    "signature"}`, the signature Ed25519 (base64url, no padding) over the canonical JSON without
    `signature`, as a checkpoint's."""

    size: int
    root: str  # 64 hex
    time: str
    key_id: str
    note: str
    signature: str = ""

    def unsigned_fields(self) -> dict[str, Any]:
        """What the JSON signature covers."""
        return {
            "version": 2,
            "log": WRITERS_KEY,
            "size": self.size,
            "root": CHAIN_PREFIX + self.root,
            "time": self.time,
            "key_id": self.key_id,
            "note": self.note,
        }

    def to_bytes(self) -> bytes:
        """The record value."""
        return canonical_json({**self.unsigned_fields(), "signature": self.signature})

    @classmethod
    def sign(
        cls, name: str, size: int, root: bytes, *, time: str, key_id: str, key: Ed25519PrivateKey
    ) -> "WritersNote":
        """The note of the writers' tree of `size` entries with `root`, signed by `key` under
        the key name `name` (origin `<name>/writers`), in its signed envelope."""
        note = sign_note(TreeHead(writers_log(name), size, root).text(), name, key)
        unsigned = cls(size, root.hex(), time, key_id, note)
        signature = b64url(key.sign(canonical_json(unsigned.unsigned_fields())))
        return cls(size, root.hex(), time, key_id, note, signature)

    @classmethod
    def from_json(cls, data: bytes | None) -> "WritersNote":
        """Parse an envelope strictly (its note says what its fields say); WritersFormatError."""
        if data is None or len(data) > MAX_BYTES:
            raise WritersFormatError("not a writers note (no value or too long)")
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise WritersFormatError(f"not JSON: {str(exc)[:80]}") from exc
        fields = {"version", "log", "size", "root", "time", "key_id", "note", "signature"}
        if not isinstance(value, dict) or value.keys() != fields:
            raise WritersFormatError(f"a writers note has exactly the fields {sorted(fields)}")
        if value["version"] != 2 or value["log"] != WRITERS_KEY:
            raise WritersFormatError('a writers note is version 2 of log "writers"')
        size, root = value["size"], value["root"]
        if type(size) is not int or size < 0:
            raise WritersFormatError("size is not a non-negative integer")
        if not (
            isinstance(root, str) and root.startswith(CHAIN_PREFIX) and _HEX64.fullmatch(root, 7)
        ):
            raise WritersFormatError("root is not sha256:<64 lowercase hex>")
        if not all(isinstance(value[n], str) for n in ("time", "key_id", "note", "signature")):
            raise WritersFormatError("time, key_id, note and signature are strings")
        parsed = cls(
            size, root[7:], value["time"], value["key_id"], value["note"], value["signature"]
        )
        try:
            note = parse_note(parsed.note.encode())
            head = TreeHead.parse(note.text)
        except NoteError as exc:
            raise WritersFormatError(f"note: {str(exc)[:100]}") from exc
        if len(note.signatures) != 1:
            raise WritersFormatError("the note has not exactly one signature line")
        expected = TreeHead(writers_log(note.signatures[0].name), size, bytes.fromhex(parsed.root))
        if head != expected:
            raise WritersFormatError("the note is not the tree head its fields name")
        return parsed

    def verifies(self, key: Any) -> bool:
        """True when both the JSON signature and the note verify with public key `key`."""
        try:
            key.verify(unb64url(self.signature), canonical_json(self.unsigned_fields()))
            name = parse_note(self.note.encode()).signatures[0].name
            open_note(self.note.encode(), [Verifier.of(name, key)])
        except Exception:  # any failure: not signed by this key
            return False
        return True

    @property
    def root_bytes(self) -> bytes:
        """The root, 32 bytes."""
        return bytes.fromhex(self.root)
