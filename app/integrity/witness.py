"""Outside witnesses of the log of writers, as C2SP defines them, in pure code (no I/O): the
service's cosigner (app/integrity/cosigner.py) and `verify` both use it; which witnesses and how
many is app/integrity/witness_policy.py.

- **tlog-witness** (c2sp.org/tlog-witness): `POST <url>/add-checkpoint` with the body
  `old <size>\\n`, the consistency proof from `old` (base64, one hash a line, at most 63), a
  blank line, then the signed checkpoint note. 200: the witness's cosignature line(s); 409 with
  content type `text/x.tlog.size`: the body is the size the witness holds (we sent the wrong
  `old`); 400 old > new; 403 no signature by a key it trusts; 404 an origin it does not know;
  422 the proof does not verify: the checkpoint does not extend what it saw.
- **tlog-cosignature** (c2sp.org/tlog-cosignature): a witness key is Ed25519 with the key type
  0x04; its key id is SHA-256(name || 0x0A || 0x04 || key)[:4]. A cosignature line is
  `— <name> <base64(key id || u64 big-endian time || signature)>`, the signature over
  `cosignature/v1\\ntime <time>\\n` followed by the checkpoint's note text. It says: at that
  time the witness had verified the checkpoint is consistent with every one it cosigned before.
"""

import base64
import binascii
import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.integrity.checkpoint import CHAIN_PREFIX, MAX_BYTES, canonical_json
from app.integrity.note import DASH, MAX_PROOF_HASHES, NoteError, TreeHead, check_name

COSIGNATURE_V1 = 0x04
SIZE_TYPE = "text/x.tlog.size"
# The Kafka key of cosignatures on the checkpoints topic (a writer id is 32 hex).
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class WitnessError(ValueError):
    """A witness answer, cosignature or policy that is not what the specs say."""


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def cosigner_key_id(name: str, key: Ed25519PublicKey) -> bytes:
    """The 4-byte id of a witness's cosignature key named `name`."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([COSIGNATURE_V1]) + _raw(key)).digest()[:4]


def cosignature_message(time: int, text: str) -> bytes:
    """What a cosignature at `time` (unix seconds) over the checkpoint note text signs."""
    return f"cosignature/v1\ntime {time}\n{text}".encode()


@dataclass(frozen=True)
class Cosignature:
    """One verified cosignature: the witness's key name, its time and the line as served."""

    name: str
    time: int
    line: str


@dataclass(frozen=True)
class WitnessKey:
    """A witness's cosignature verifier key."""

    name: str
    key_id: bytes
    key: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> "WitnessKey":
        """Read `<name>+<8 hex id>+<base64(0x04 || key)>`; WitnessError otherwise."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise WitnessError(f"not a verifier key <name>+<8 hex>+<base64>: {text[:80]!r}")
        name, hex_id, encoded = parts
        try:
            check_name(name)
            raw = base64.b64decode(encoded.encode("ascii"), validate=True)
        except (NoteError, binascii.Error, UnicodeEncodeError) as exc:
            raise WitnessError(f"not a verifier key: {exc}") from None
        if len(raw) != 33 or raw[0] != COSIGNATURE_V1:
            raise WitnessError(
                "a witness key is a cosignature/v1 key (type 0x04, Ed25519, 32 bytes)"
            )
        key = Ed25519PublicKey.from_public_bytes(raw[1:])
        if cosigner_key_id(name, key).hex() != hex_id:
            raise WitnessError(f"the key id {hex_id} does not match the key of {name!r}")
        return cls(name, bytes.fromhex(hex_id), key)

    def text(self) -> str:
        """The verifier-key text."""
        encoded = base64.b64encode(bytes([COSIGNATURE_V1]) + _raw(self.key)).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, line: str, text: str) -> Cosignature:
        """The cosignature `line` (`— <name> <base64>`) by this key over the checkpoint note
        text `text`, verified; WitnessError when it is another key's or does not verify."""
        if not line.startswith(DASH) or line.count(" ") != 2:
            raise WitnessError(f"not a signature line: {line[:80]!r}")
        name, encoded = line[len(DASH) :].split(" ")
        try:
            raw = base64.b64decode(encoded.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise WitnessError("a cosignature is not base64") from None
        if name != self.name or raw[:4] != self.key_id:
            raise WitnessError(f"a signature by {name!r}, not by witness {self.name!r}")
        if len(raw) != 4 + 8 + 64:
            raise WitnessError("a cosignature is a key id, a time and an Ed25519 signature")
        (time,) = struct.unpack(">Q", raw[4:12])
        try:
            self.key.verify(raw[12:], cosignature_message(time, text))
        except InvalidSignature:
            raise WitnessError(f"the cosignature of {self.name!r} does not verify") from None
        return Cosignature(self.name, time, line)


def cosign(name: str, key: Ed25519PrivateKey, text: str, time: int) -> str:
    """A cosignature line over `text` (for unit tests: a witness's side)."""
    key_id = cosigner_key_id(name, key.public_key())
    signature = key.sign(cosignature_message(time, text))
    encoded = base64.b64encode(key_id + struct.pack(">Q", time) + signature).decode()
    return f"{DASH}{name} {encoded}"


def witness_key_text(name: str, key: Ed25519PublicKey) -> str:
    """The verifier-key text of a witness key (for unit tests)."""
    return WitnessKey(check_name(name), cosigner_key_id(name, key), key).text()


def add_checkpoint_body(old: int, proof: list[bytes], note: str) -> bytes:
    """The body of `POST /add-checkpoint`: `old`, the consistency proof, a blank line, the
    signed checkpoint note."""
    if old < 0 or len(proof) > MAX_PROOF_HASHES:
        raise WitnessError(f"old is >= 0 and a proof has at most {MAX_PROOF_HASHES} hashes")
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


@dataclass(frozen=True)
class Cosigned:
    """200: the witness cosigned; the lines by its key, verified."""

    cosignatures: tuple[Cosignature, ...]


@dataclass(frozen=True)
class SizeConflict:
    """409: `old` was not the size the witness holds; it holds `size`."""

    size: int


@dataclass(frozen=True)
class Refused:
    """The witness will not cosign this checkpoint (403, 404, 422, or a conflict at the same
    size): it does not extend what the witness saw, or the witness does not trust our log."""

    status: int
    reason: str


@dataclass(frozen=True)
class Failed:
    """Any other answer (400, 5xx, garbage): try again later."""

    status: int
    reason: str


Answer = Cosigned | SizeConflict | Refused | Failed


def interpret(
    status: int, content_type: str, body: bytes, *, key: WitnessKey, text: str, old: int
) -> Answer:
    """What a witness's answer to an add-checkpoint of the note text `text` sent with `old`
    means. A 200 whose lines hold no valid cosignature by `key` is a failure."""
    reason = body[:200].decode("utf-8", "replace").strip()
    if status == 200:
        found = []
        for line in body.decode("utf-8", "replace").splitlines():
            try:
                found.append(key.verify(line, text))
            except WitnessError:
                continue  # another algorithm's line, or another key's: not ours to judge
        if not found:
            return Failed(status, f"no valid cosignature by {key.name!r} in the answer")
        return Cosigned(tuple(found))
    if status == 409 and content_type.split(";", maxsplit=1)[0].strip() == SIZE_TYPE:
        return _size_conflict(body, old)
    if status in (403, 404, 409, 422):
        return Refused(status, reason or f"HTTP {status}")
    return Failed(status, reason or f"HTTP {status}")


def _size_conflict(body: bytes, old: int) -> Answer:
    size = body.decode("ascii", "replace").strip()
    if not _DECIMAL.fullmatch(size):
        return Failed(409, f"a 409 whose body is not a size: {size[:80]!r}")
    if int(size) == old:
        # It holds `old` and still conflicts: it has another tree of that size.
        return Refused(409, f"the witness holds another tree of size {old}")
    return SizeConflict(int(size))


def with_cosignatures(note: str, lines: list[str]) -> str:
    """The signed `note` with the cosignature `lines` appended (each once, in order)."""
    present = set(note.splitlines())
    extra = [line for line in dict.fromkeys(lines) if line not in present]
    return note + "".join(line + "\n" for line in extra)


@dataclass(frozen=True)
class CosignatureRecord:
    """A cosignature as kept on the checkpoints topic keyed `cosignatures`: the canonical JSON
    `{"version": 1, "origin", "size", "root": "sha256:<hex>", "witness", "line"}`. The line
    proves itself (it verifies with the witness's key over the checkpoint the other fields
    name); the envelope needs no signature of ours."""

    origin: str
    size: int
    root: str  # 64 hex
    witness: str
    line: str

    def head(self) -> TreeHead:
        """The checkpoint the line cosigns."""
        return TreeHead(self.origin, self.size, bytes.fromhex(self.root))

    def to_bytes(self) -> bytes:
        """The record value."""
        fields: dict[str, Any] = {
            "version": 1,
            "origin": self.origin,
            "size": self.size,
            "root": CHAIN_PREFIX + self.root,
            "witness": self.witness,
            "line": self.line,
        }
        return canonical_json(fields)

    @classmethod
    def from_json(cls, data: bytes | None) -> "CosignatureRecord":
        """Parse a record value strictly; WitnessError for anything else."""
        if data is None or len(data) > MAX_BYTES:
            raise WitnessError("not a cosignature record (no value or too long)")
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise WitnessError(f"not JSON: {str(exc)[:80]}") from None
        fields = {"version", "origin", "size", "root", "witness", "line"}
        if not isinstance(value, dict) or value.keys() != fields or value["version"] != 1:
            raise WitnessError(f"a cosignature record is version 1 with {sorted(fields)}")
        size, root = value["size"], value["root"]
        if type(size) is not int or size < 0:
            raise WitnessError("size is not a non-negative integer")
        if not (
            isinstance(root, str) and root.startswith(CHAIN_PREFIX) and _HEX64.fullmatch(root, 7)
        ):
            raise WitnessError("root is not sha256:<64 lowercase hex>")
        if not all(isinstance(value[n], str) and value[n] for n in ("origin", "witness", "line")):
            raise WitnessError("origin, witness and line are non-empty strings")
        return cls(value["origin"], size, root[7:], value["witness"], value["line"])
