"""Signed checkpoints: a writer's statement "my chain up to seq N ends in this link".

A checkpoint is a JSON object (spec v1, docs/integrity.md):

    {"version": 1, "writer", "seq", "count", "chain": "sha256:<hex>", "time", "key_id",
     "void": {"<seq>": "sha256:<hex>"}, "signature": "<base64url, no padding>"}

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

VERSION = 1
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
    """One checkpoint of a writer; `signature` is empty until `sign()`. `chain` and the
    values of `void` are 64 hex digits, without the `sha256:` prefix (added on the wire)."""

    writer: str
    seq: int
    chain: str
    time: str
    key_id: str
    void: dict[int, str] = field(default_factory=dict)
    signature: str = ""
    version: int = VERSION

    @property
    def count(self) -> int:
        """Positions covered: seqs 0..seq."""
        return self.seq + 1

    def unsigned_fields(self) -> dict[str, Any]:
        """The JSON object without `signature`: what is signed."""
        return {
            "version": self.version,
            "writer": self.writer,
            "seq": self.seq,
            "count": self.count,
            "chain": CHAIN_PREFIX + self.chain,
            "time": self.time,
            "key_id": self.key_id,
            "void": {str(seq): CHAIN_PREFIX + link for seq, link in sorted(self.void.items())},
        }

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

    def sign(self, key: Ed25519PrivateKey) -> "Checkpoint":
        """This checkpoint with its Ed25519 signature."""
        return replace(self, signature=b64url(key.sign(self.signed_bytes())))

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
        if data.keys() != _FIELDS:
            unknown, absent = data.keys() - _FIELDS, _FIELDS - data.keys()
            raise CheckpointFormatError(
                f"fields not of a checkpoint: {sorted(unknown)[:5]}"
                if unknown
                else f"fields missing: {sorted(absent)}"
            )
        void = _typed(data, "void", dict)
        if not all(isinstance(s, str) and _SEQ.fullmatch(s) for s in void):
            raise CheckpointFormatError("void keys are not seqs (decimal, no leading zeros)")
        try:
            void_seqs = {int(seq): _hex_of(link) for seq, link in void.items()}
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
        )
        if checkpoint.version != VERSION:
            raise CheckpointFormatError(f"not a version {VERSION} checkpoint")
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
_WRITER = re.compile(r"[0-9a-f]{32}")
_SEQ = re.compile(r"0|[1-9][0-9]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{85}[AQgw]")


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


def new_checkpoint(
    *, writer: str, seq: int, chain: str, key_id: str, void: dict[int, str] | None = None
) -> Checkpoint:
    """An unsigned checkpoint stamped now."""
    return Checkpoint(
        writer=writer,
        seq=seq,
        chain=chain,
        time=rfc3339(datetime.now(UTC)),
        key_id=key_id,
        void=dict(void or {}),
    )


def verify_signature(checkpoint: Checkpoint, key: Ed25519PublicKey) -> bool:
    """True when `checkpoint.signature` is `key`'s signature of its signed bytes."""
    try:
        key.verify(unb64url(checkpoint.signature), checkpoint.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True
