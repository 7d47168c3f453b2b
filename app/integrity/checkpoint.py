"""Signed checkpoints: a writer's statement "my chain up to seq N ends in this link" (and, from
version 2, "my Merkle tree of positions 0..N has this root").

A checkpoint is a JSON object (docs/integrity.md). Version 1 (read, no longer written):

    {"version": 1, "writer", "seq", "count", "chain": "sha256:<hex>", "time", "key_id",
     "void": {"<seq>": "sha256:<link hex>"}, "signature": "<base64url, no padding>"}

Version 2, what the service writes: the same plus `tree` (the writer's RFC 6962 root over
positions 0..seq) and `note`, the C2SP signed note of the tree head (tlog-checkpoint
`<name>/writer/<writer>`, `count`, base64 root) signed by the same key under the key name `<name>`
(RG_AUDIT_LOG_ORIGIN); its `void` lists every position lost up to `seq` with the lost record's
digest (not its link):

    {"version": 2, ..., "tree": "sha256:<root hex>", "void": {"<seq>": "sha256:<digest hex>"},
     "note": "<origin>/writer/<writer>\n<count>\n<base64 root>\n\n— <origin> <base64>\n", ...}

The signature is Ed25519 over the canonical JSON of the object without `signature`: sorted
keys, separators "," and ":", UTF-8, no ASCII escaping. Anyone holding the writer's public key
can check it; a witness that keeps the latest checkpoint can later prove the trail was not cut
or rewritten below it. Pure code (no service, no Kafka): the verifier imports it too.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.integrity.note import NoteError, TreeHead, Verifier, open_note, parse_note, sign_note

VERSION = 1
VERSION_2 = 2
CHAIN_PREFIX = "sha256:"
# Far above any real checkpoint (its void lists a second's lost positions, ~80 bytes each) and
# above Kafka's default record limit (1 MB): longer values are refused before parsing.
MAX_BYTES = 4 * 1024 * 1024


class CheckpointFormatError(ValueError):
    """A checkpoint's JSON lacks a field or has one of the wrong type."""


def b64url(data: bytes) -> str:
    """base64url without padding, as the signature is written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """The bytes of unpadded base64url text in its one spelling (the alphabet A-Z a-z 0-9 - _,
    no padding, no other character, unused bits zero); ValueError for anything else."""
    if not _B64URL.fullmatch(text):
        raise ValueError(f"not unpadded base64url: {text[:20]!r}")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {text[:20]!r}") from exc
    if b64url(data) != text:
        raise ValueError(f"not base64url in its one spelling: {text[:20]!r}")
    return data


def rfc3339(moment: datetime) -> str:
    """UTC with microseconds and `Z`: 2026-01-02T03:04:05.000006Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> bytes:
    """The bytes that are signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a writer; `signature` (and `note`, version 2) empty until `sign()`.
    `chain`, `tree` and the values of `void` are 64 hex digits, without the `sha256:` prefix
    (added on the wire); `void` values are links in version 1, in version 2 the lost record's
    leaf tail (`merkle.leaf_tail`: its digest, and a framed value's schema id after a LF, on
    the wire `;schema-id=<id>`). `tree` and `note` are empty in version 1."""

    writer: str
    seq: int
    chain: str
    time: str
    key_id: str
    void: dict[int, str] = field(default_factory=dict)
    signature: str = ""
    version: int = VERSION
    tree: str = ""
    note: str = ""

    @property
    def count(self) -> int:
        """Positions covered: seqs 0..seq."""
        return self.seq + 1

    def unsigned_fields(self) -> dict[str, Any]:
        """The JSON object without `signature`: what is signed."""
        fields: dict[str, Any] = {
            "version": self.version,
            "writer": self.writer,
            "seq": self.seq,
            "count": self.count,
            "chain": CHAIN_PREFIX + self.chain,
            "time": self.time,
            "key_id": self.key_id,
            "void": {str(seq): _void_text(value) for seq, value in sorted(self.void.items())},
        }
        if self.version == VERSION_2:
            fields["tree"] = CHAIN_PREFIX + self.tree
            fields["note"] = self.note
        return fields

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers."""
        return canonical_json(self.unsigned_fields())

    def as_json(self) -> dict[str, Any]:
        """The checkpoint as the spec's JSON object (what the topic and GET /audit/checkpoint
        hold)."""
        return {**self.unsigned_fields(), "signature": self.signature}

    def to_bytes(self) -> bytes:
        """The record value on the checkpoints topic."""
        return canonical_json(self.as_json())

    def sign(self, key: Ed25519PrivateKey, *, name: str | None = None) -> "Checkpoint":
        """This checkpoint with its Ed25519 signature; a version 2 one first gets its `note`,
        signed by `key` under the key name `name` (the log origin, RG_AUDIT_LOG_ORIGIN)."""
        signed = self
        if self.version == VERSION_2:
            if name is None:
                raise ValueError("a version 2 checkpoint's note needs the key name")
            signed = replace(self, note=sign_note(self.tree_head(name).text(), name, key))
        return replace(signed, signature=b64url(key.sign(signed.signed_bytes())))

    def tree_head(self, name: str) -> TreeHead:
        """The tlog-checkpoint body of a version 2 checkpoint whose key is named `name`:
        origin `<name>/writer/<writer>`, size `count`, root `tree`."""
        return TreeHead(writer_log(name, self.writer), self.count, bytes.fromhex(self.tree))

    @property
    def key_name(self) -> str:
        """The key name of a version 2 checkpoint's note (the log origin it was signed for)."""
        return parse_note(self.note.encode()).signatures[0].name

    @classmethod
    def from_json(cls, data: Any) -> "Checkpoint":
        """Parse a checkpoint (bytes or str as read from the topic, or a dict); the one parser
        of `verify` and the coverage view. CheckpointFormatError, whatever the input, when it is
        not exactly the spec's object: every field present with its JSON type, no other field,
        no key twice, `count` = seq + 1 (it is signed, so a checkpoint saying otherwise was not
        written by a service), values in their one canonical spelling. Then `signed_bytes()`
        re-serialised from the fields are exactly the received object's canonical JSON without
        `signature`: what one reader verifies is what every reader reads."""
        if isinstance(data, str | bytes):
            data = _loads(data)
        if not isinstance(data, dict):
            raise CheckpointFormatError("a checkpoint is a JSON object")
        v2 = type(data.get("version")) is int and data["version"] == VERSION_2
        expected = _FIELDS_V2 if v2 else _FIELDS
        if data.keys() != expected:
            unknown, absent = data.keys() - expected, expected - data.keys()
            raise CheckpointFormatError(
                f"fields not of a checkpoint: {sorted(unknown)[:5]}"
                if unknown
                else f"fields missing: {sorted(absent)}"
            )
        void = _typed(data, "void", dict)
        if not all(isinstance(s, str) and _SEQ.fullmatch(s) for s in void):
            raise CheckpointFormatError("void keys are not seqs (decimal, no leading zeros)")
        try:
            void_seqs = {int(seq): _void_value(value, v2) for seq, value in void.items()}
        except ValueError as exc:  # more digits than Python converts
            raise CheckpointFormatError(f"void: {str(exc)[:80]}") from exc
        checkpoint = cls(
            version=_typed(data, "version", int),
            writer=_typed(data, "writer", str),
            seq=_typed(data, "seq", int),
            chain=_hex_of(data["chain"]),
            time=_typed(data, "time", str),
            key_id=_typed(data, "key_id", str),
            void=void_seqs,
            signature=_typed(data, "signature", str),
            tree=_hex_of(data["tree"]) if v2 else "",
            note=_typed(data, "note", str) if v2 else "",
        )
        if checkpoint.version not in (VERSION, VERSION_2):
            raise CheckpointFormatError(f"not a version {VERSION} or {VERSION_2} checkpoint")
        if not _WRITER.fullmatch(checkpoint.writer):
            raise CheckpointFormatError("writer is not 32 lowercase hex digits")
        if checkpoint.seq < 0:
            raise CheckpointFormatError("seq is negative")
        if _typed(data, "count", int) != checkpoint.count:
            raise CheckpointFormatError("count is not seq + 1")
        if not _SIGNATURE.fullmatch(checkpoint.signature):
            # 64 bytes are 86 characters, the last one's 4 unused bits zero: one spelling only.
            raise CheckpointFormatError("signature is not 86 characters of unpadded base64url")
        checkpoint.moment()  # a time that does not parse is a format error, not a late one
        if v2:
            _check_note(checkpoint)
        return checkpoint

    def moment(self) -> datetime:
        """`time` as a UTC datetime; CheckpointFormatError when it is not RFC 3339 with its
        offset."""
        # Python reads many more ISO 8601 spellings (a space, no colons, a comma) than readers
        # in other languages take: one form for all.
        if not _TIME.fullmatch(self.time):
            raise CheckpointFormatError(f"time is not RFC 3339: {self.time[:40]!r}")
        try:
            moment = datetime.fromisoformat(self.time)
        except ValueError as exc:
            raise CheckpointFormatError(f"time is not RFC 3339: {self.time[:40]!r}") from exc
        if moment.tzinfo is None:
            raise CheckpointFormatError(f"time has no offset: {self.time[:40]!r}")
        return moment.astimezone(UTC)


_FIELDS = frozenset(
    ("version", "writer", "seq", "count", "chain", "time", "key_id", "void", "signature")
)
_FIELDS_V2 = _FIELDS | {"tree", "note"}
_WRITER = re.compile(r"[0-9a-f]{32}")
_SEQ = re.compile(r"0|[1-9][0-9]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{85}[AQgw]")


def writer_log(name: str, writer: str) -> str:
    """The origin of `writer`'s log (its tree's checkpoints) under the log origin `name`
    (RG_AUDIT_LOG_ORIGIN): `<name>/writer/<writer id>`."""
    return f"{name}/writer/{writer}"


def _check_note(checkpoint: Checkpoint) -> None:
    """A version 2 checkpoint's note says what its fields say: one signature line, by key name
    `name`; the text exactly the tree head `<name>/writer/<writer>`, `count`, `tree` (no
    extension)."""
    try:
        note = parse_note(checkpoint.note.encode())
        if len(note.signatures) != 1:
            raise CheckpointFormatError("the note has not exactly one signature line")
        head = TreeHead.parse(note.text)
    except NoteError as exc:
        raise CheckpointFormatError(f"note: {str(exc)[:100]}") from exc
    name = note.signatures[0].name
    expected = checkpoint.tree_head(name)
    if head.origin != expected.origin:
        raise CheckpointFormatError(
            f"the note's origin {head.origin[:80]!r} is not {expected.origin[:80]!r} "
            "(<key name>/writer/<writer>)"
        )
    if head.size != checkpoint.count:
        raise CheckpointFormatError(f"the note's size {head.size} is not count")
    if head.root != expected.root:
        raise CheckpointFormatError("the note's root is not tree")
    if head.extensions:
        raise CheckpointFormatError("the note has lines after the root")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python keeps the last of two equal keys, other JSON readers the first: refuse both.
    data = dict(pairs)
    if len(data) != len(pairs):
        raise CheckpointFormatError("a key appears twice in one object")
    return data


def _loads(text: str | bytes) -> Any:
    """The JSON value of a record's bytes; CheckpointFormatError for anything else, whatever
    the bytes: anyone who may write the checkpoints topic chooses them."""
    if len(text) > MAX_BYTES:
        raise CheckpointFormatError(f"{len(text)} bytes: longer than a checkpoint ({MAX_BYTES})")
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, object_pairs_hook=_unique)
    except CheckpointFormatError:
        raise
    # RecursionError: deep nesting ("[" * 5000) exhausts the C scanner's recursion limit; it is
    # not a ValueError. UnicodeDecodeError and too many digits for an int are ValueErrors.
    except (ValueError, RecursionError) as exc:
        raise CheckpointFormatError(f"not JSON: {str(exc)[:100]}") from exc


def _typed(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data[name]
    # bool is an int to Python, not to JSON readers of other languages.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CheckpointFormatError(f"{name} is not a {kind.__name__}")
    return value


def _hex_of(link: object) -> str:
    if not (isinstance(link, str) and link.startswith(CHAIN_PREFIX) and _HEX64.fullmatch(link, 7)):
        raise CheckpointFormatError(f"not sha256:<64 lowercase hex>: {str(link)[:80]!r}")
    return link.removeprefix(CHAIN_PREFIX)


# A version 2 void value: the lost record's digest, and the schema id of a framed value.
_VOID_V2 = re.compile(r"sha256:([0-9a-f]{64})(?:;schema-id=(0|[1-9][0-9]{0,9}))?")
_SCHEMA_ID_MAX = 2**32 - 1  # 4 bytes in the frame


def _void_text(value: str) -> str:
    """The wire form of a void value (a link, or a leaf tail)."""
    digest, _, schema_id = value.partition("\n")
    return CHAIN_PREFIX + digest + (f";schema-id={schema_id}" if schema_id else "")


def _void_value(text: object, v2: bool) -> str:
    """A void value read strictly: `sha256:<64 hex>`, in version 2 optionally followed by
    `;schema-id=<decimal, no leading zeros, below 2^32>`."""
    if not v2:
        return _hex_of(text)
    found = _VOID_V2.fullmatch(text) if isinstance(text, str) else None
    if found is None or int(found.group(2) or 0) > _SCHEMA_ID_MAX:
        raise CheckpointFormatError(
            f"not sha256:<64 lowercase hex>[;schema-id=<id>]: {str(text)[:80]!r}"
        )
    digest, schema_id = found.group(1), found.group(2)
    return digest if schema_id is None else f"{digest}\n{schema_id}"


def new_checkpoint(
    *,
    writer: str,
    seq: int,
    chain: str,
    key_id: str,
    void: dict[int, str] | None = None,
    tree: bytes | None = None,
) -> Checkpoint:
    """An unsigned checkpoint stamped now: version 2 when the tree's root is given (then
    `void` holds digests), else version 1."""
    return Checkpoint(
        writer=writer,
        seq=seq,
        chain=chain,
        time=rfc3339(datetime.now(UTC)),
        key_id=key_id,
        void=dict(void or {}),
        version=VERSION if tree is None else VERSION_2,
        tree="" if tree is None else tree.hex(),
    )


def verify_signature(checkpoint: Checkpoint, key: Ed25519PublicKey) -> bool:
    """True when `checkpoint.signature` is `key`'s signature of its signed bytes."""
    try:
        key.verify(unb64url(checkpoint.signature), checkpoint.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_note(checkpoint: Checkpoint, key: Ed25519PublicKey) -> bool:
    """True when a version 2 checkpoint's note opens with `key` under its key name (True for
    version 1, which has none). `from_json` checked that the note says what the JSON says."""
    if checkpoint.version != VERSION_2:
        return True
    try:
        open_note(checkpoint.note.encode(), [Verifier.of(checkpoint.key_name, key)])
    except (NoteError, IndexError):
        return False
    return True
