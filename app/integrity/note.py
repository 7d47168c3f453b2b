"""The C2SP text formats outsiders verify our trees with, so that Go's `sumdb/note`,
`transparency-dev/formats` and any witness read them without our code:

- **signed-note** (c2sp.org/signed-note): UTF-8 text ending in a newline, a blank line, then one
  line per signature, `— <key name> <base64(key id || signature)>` (U+2014 and a space). The
  Ed25519 key id is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key); a
  verifier key is `<name>+<8 hex key id>+<base64(0x01 || public key)>`. Signatures by keys a
  verifier does not know are ignored (rotation, cosigning); a known key's bad signature fails
  the whole note.
- **tlog-checkpoint** (c2sp.org/tlog-checkpoint): the note text `<origin>\\n<size>\\n<base64
  root>\\n`, optional extension lines after.
- **tlog-proof** (c2sp.org/tlog-proof): `c2sp.org/tlog-proof@v1`, optional `extra <base64>`,
  `index <n>`, the inclusion proof's hashes one per line, a blank line, then the signed
  checkpoint.

Decoders are strict: one spelling for every value (no leading zeros, padded standard base64
that re-encodes to itself), so two different byte strings never mean the same thing.
"""

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
DASH = "\u2014 "
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
PROOF_HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_HASHES = 63
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


class NoteError(ValueError):
    """A note, checkpoint or proof that is malformed, or whose signatures do not verify."""


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"{what} is not base64: {text[:80]!r}") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not in canonical base64: {text[:80]!r}")
    return raw


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def check_name(name: str) -> str:
    """`name` if it can name a key (non-empty, no whitespace, no '+'), else NoteError."""
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"a key name is non-empty, without spaces or '+': {name[:80]!r}")
    return name


def key_id(name: str, key: Ed25519PublicKey) -> bytes:
    """The 4-byte id of an Ed25519 key named `name`."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + _raw(key)).digest()[:4]


def verifier_key(name: str, key: Ed25519PublicKey) -> str:
    """The verifier-key text of a log's Ed25519 key, as `note.NewVerifier` reads it."""
    check_name(name)
    encoded = base64.b64encode(bytes([ED25519]) + _raw(key)).decode("ascii")
    return f"{name}+{key_id(name, key).hex()}+{encoded}"


@dataclass(frozen=True)
class Verifier:
    """A trusted key: its name, id and public key."""

    name: str
    key_id: bytes
    key: Ed25519PublicKey

    @classmethod
    def of(cls, name: str, key: Ed25519PublicKey) -> "Verifier":
        """The verifier of `key` named `name`."""
        return cls(check_name(name), key_id(name, key), key)

    @classmethod
    def parse(cls, text: str) -> "Verifier":
        """Read a verifier key `<name>+<hex id>+<base64(0x01 || key)>`."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise NoteError(f"not a verifier key <name>+<8 hex>+<base64>: {text[:80]!r}")
        name, hex_id, encoded = parts
        raw = _b64decode(encoded, "the verifier key")
        if len(raw) != 33 or raw[0] != ED25519:
            raise NoteError("only Ed25519 verifier keys (type 0x01, 32 bytes) are read")
        verifier = cls.of(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_id.hex() != hex_id:
            raise NoteError(f"the key id {hex_id} does not match the key of {name!r}")
        return verifier


# Control characters other than LF (a regex: a loop over the characters costs ~50 us a note).
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


def _check_text(text: str) -> None:
    if not text.endswith("\n") or "\n\n" in text or text.startswith("\n"):
        raise NoteError("a note's text ends with one newline and has no blank line")
    if _CONTROL.search(text):
        raise NoteError("a note's text has no control characters but newlines")


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """The signed note of `text` with one signature line by `key` named `name`."""
    _check_text(text)
    check_name(name)
    signature = key.sign(text.encode())
    line = base64.b64encode(key_id(name, key.public_key()) + signature).decode("ascii")
    return f"{text}\n{DASH}{name} {line}\n"


@dataclass(frozen=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Note:
    """A parsed note: its text and every signature line (verified or not)."""

    text: str
    signatures: tuple[Signature, ...]
    verified: tuple[str, ...] = field(default=())


def parse_note(data: bytes) -> Note:
    """Split a signed note into its text and signature lines, checking the syntax only."""
    if len(data) > MAX_NOTE_BYTES:
        raise NoteError(f"a note is at most {MAX_NOTE_BYTES} bytes")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError("a note is UTF-8") from exc
    cut = whole.rfind("\n\n")
    if cut < 0 or not whole.endswith("\n"):
        raise NoteError("a note is its text, a blank line and signature lines")
    text, lines = whole[: cut + 1], whole[cut + 2 : -1].split("\n")
    _check_text(text)
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a note has at most {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(DASH) or line.count(" ") != 2:
            raise NoteError(f"not a signature line: {line[:80]!r}")
        name, encoded = line[len(DASH) :].split(" ")
        raw = _b64decode(encoded, "a signature")
        if len(raw) < 5:
            raise NoteError("a signature is a 4-byte key id and the signature")
        signatures.append(Signature(check_name(name), raw[:4], raw[4:]))
    return Note(text, tuple(signatures))


def open_note(data: bytes, verifiers: list[Verifier]) -> Note:
    """The note, once at least one known key's signature verifies; unknown keys are ignored,
    and any known key's signature that does not verify fails the whole note."""
    note = parse_note(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[str] = []
    for signature in note.signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            continue
        try:
            verifier.key.verify(signature.signature, note.text.encode())
        except InvalidSignature as exc:
            raise NoteError(f"the signature of {signature.name!r} does not verify") from exc
        verified.append(signature.name)
    if not verified:
        raise NoteError("no signature by a trusted key")
    return Note(note.text, note.signatures, tuple(verified))


@dataclass(frozen=True)
class TreeHead:
    """A tlog-checkpoint body: which log, how many entries, their root."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text of this checkpoint."""
        if not self.origin or "\n" in self.origin or len(self.root) != 32 or self.size < 0:
            raise NoteError("a checkpoint has an origin line, a size and a 32-byte root")
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> "TreeHead":
        """Read a checkpoint's note text strictly."""
        _check_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < 3 or not lines[0]:
            raise NoteError("a checkpoint is an origin, a size and a root, a line each")
        if not _DECIMAL.fullmatch(lines[1]):
            raise NoteError(f"a checkpoint's size is a decimal without leading zeros: {lines[1]!r}")
        root = _b64decode(lines[2], "the root hash")
        if len(root) != 32:
            raise NoteError("a root hash is 32 bytes")
        return cls(lines[0], int(lines[1]), root, tuple(lines[3:]))


@dataclass(frozen=True)
class TlogProof:
    """A c2sp.org/tlog-proof: an entry's index, its inclusion proof and the signed checkpoint."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def encode(self) -> bytes:
        """The proof's text."""
        lines = [PROOF_HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(h).decode() for h in self.hashes]
        return ("\n".join(lines) + "\n\n").encode() + self.checkpoint

    @classmethod
    def parse(cls, data: bytes) -> "TlogProof":
        """Read a tlog-proof strictly (the checkpoint note is parsed, not verified)."""
        head, sep, checkpoint = data.partition(b"\n\n")
        if not sep:
            raise NoteError("a tlog-proof is its header lines, a blank line and a checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError as exc:
            raise NoteError("a tlog-proof's header lines are ASCII") from exc
        if lines[0] != PROOF_HEADER:
            raise NoteError(f"a tlog-proof begins with {PROOF_HEADER!r}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = _b64decode(rest.pop(0)[len("extra ") :], "the extra data")
        if not rest or not rest[0].startswith("index "):
            raise NoteError("a tlog-proof names the entry's index")
        number = rest.pop(0)[len("index ") :]
        if not _DECIMAL.fullmatch(number):
            raise NoteError(f"an index is a decimal without leading zeros: {number!r}")
        if len(rest) > MAX_PROOF_HASHES:
            raise NoteError(f"an inclusion proof has at most {MAX_PROOF_HASHES} hashes")
        hashes = tuple(_b64decode(line, "a proof hash") for line in rest)
        if any(len(h) != 32 for h in hashes):
            raise NoteError("a proof hash is 32 bytes")
        parse_note(checkpoint)
        return cls(int(number), hashes, checkpoint, extra)
