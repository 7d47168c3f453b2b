"""The evidence bundle, format rg-bundle-v1 (docs/auditors.md): one ZIP file an auditor takes
away and checks offline (app/integrity/bundle_check.py).

Members, each once: `manifest.json` (what the bundle holds, the SHA-256 and size of every other
member) and `manifest.sig` (its Ed25519 signature, unpadded base64url and LF), `keys.json`, and
four NDJSON members: `checkpoints.ndjson`, `writers.ndjson` and `records.ndjson` hold one Kafka
record a line (`KafkaLine`: its bytes in base64), `proofs.ndjson` one tlog-proof per writer
position; and, from an export with RG_ERASURE=on, `opened.ndjson`: the records' sealed fields
opened (a view for people, listed and signed like the others, not evidence: the proofs are over
the sealed records). Every hash and signature is over a member's bytes as stored, so readers
never need to re-encode anything.
"""

import base64
import binascii
import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.checkpoint import b64url, canonical_json

FORMAT = "rg-bundle-v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
KEYS = "keys.json"
CHECKPOINTS = "checkpoints.ndjson"
WRITERS = "writers.ndjson"
RECORDS = "records.ndjson"
PROOFS = "proofs.ndjson"
OPENED = "opened.ndjson"
# The members the manifest lists, in the order they are written; `OPENED` only when written.
LISTED = (KEYS, CHECKPOINTS, WRITERS, RECORDS, PROOFS)
OPTIONAL = (OPENED,)
MEMBERS = (MANIFEST, SIGNATURE, *LISTED)
_LINE_FIELDS = frozenset({"topic", "partition", "offset", "timestamp", "key", "value", "headers"})
_MANIFEST_FIELDS = frozenset(
    {"format", "created", "key_id", "query", "topics", "records", "members"}
)


class BundleFormatError(ValueError):
    """Bytes that are not of the form rg-bundle-v1 gives them; the message says what."""


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise BundleFormatError(f"{what} is neither base64 text nor null")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleFormatError(f"{what} is not base64") from exc


def _integer(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BundleFormatError(f"{name} is not an integer")
    return value


def _object(line: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as exc:  # nested past the parser's limit: no JSON here
        raise BundleFormatError(f"{what} is not JSON") from exc
    if not isinstance(data, dict):
        raise BundleFormatError(f"{what} is not a JSON object")
    return data


@dataclass(frozen=True)
class KafkaLine:
    """One Kafka record as a line of an NDJSON member: its place, timestamp and bytes."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]

    def encode(self) -> bytes:
        """The line, canonical JSON and LF."""
        return (
            canonical_json(
                {
                    "topic": self.topic,
                    "partition": self.partition,
                    "offset": self.offset,
                    "timestamp": self.timestamp,
                    "key": _b64(self.key),
                    "value": _b64(self.value),
                    "headers": [[name, _b64(raw)] for name, raw in self.headers],
                }
            )
            + b"\n"
        )

    @classmethod
    def decode(cls, line: bytes) -> "KafkaLine":
        """A line read back; BundleFormatError when it is not of the form."""
        data = _object(line, "the line")
        if set(data) != _LINE_FIELDS:
            raise BundleFormatError(f"a record line has exactly the fields {sorted(_LINE_FIELDS)}")
        topic, headers = data["topic"], data["headers"]
        if not isinstance(topic, str) or not isinstance(headers, list):
            raise BundleFormatError("topic is not a string or headers not an array")
        pairs: list[tuple[str, bytes | None]] = []
        for pair in headers:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise BundleFormatError("a header is not a [name, value] pair")
            pairs.append((pair[0], _unb64(pair[1], f"header {pair[0][:40]!r}")))
        return cls(
            topic,
            _integer(data, "partition"),
            _integer(data, "offset"),
            _integer(data, "timestamp"),
            _unb64(data["key"], "key"),
            _unb64(data["value"], "value"),
            tuple(pairs),
        )


def proof_line(writer: str, seq: int, proof: bytes) -> bytes:
    """A line of proofs.ndjson."""
    return canonical_json({"writer": writer, "seq": seq, "proof": proof.decode("utf-8")}) + b"\n"


def parse_proof_line(line: bytes) -> tuple[str, int, bytes]:
    """Writer, seq and tlog-proof text of a line of proofs.ndjson."""
    data = _object(line, "the line")
    if set(data) != {"writer", "seq", "proof"}:
        raise BundleFormatError("a proof line has exactly the fields proof, seq, writer")
    writer, proof = data["writer"], data["proof"]
    if not isinstance(writer, str) or not isinstance(proof, str):
        raise BundleFormatError("writer or proof is not a string")
    try:
        return writer, _integer(data, "seq"), proof.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escaped in the JSON
        raise BundleFormatError("the proof is not UTF-8 text") from exc


def lines(member: bytes) -> Iterator[tuple[int, bytes]]:
    """The lines of an NDJSON member with their numbers from 0 (without the LF)."""
    if not member:
        return
    parts = member.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    yield from enumerate(parts)


@dataclass(frozen=True)
class Manifest:
    """What `manifest.json` says (its bytes are what is signed)."""

    key_id: str
    topics: dict[str, str]
    records: int
    members: dict[str, tuple[str, int]]  # name -> (sha256 hex, size)

    @classmethod
    def parse(cls, data: bytes) -> "Manifest":
        """The manifest, strictly; BundleFormatError otherwise."""
        found = _object(data, MANIFEST)
        if set(found) != _MANIFEST_FIELDS or found["format"] != FORMAT:
            raise BundleFormatError(
                f"{MANIFEST} is not an {FORMAT} manifest (fields {sorted(_MANIFEST_FIELDS)})"
            )
        key_id, topics, members = found["key_id"], found["topics"], found["members"]
        if (
            not isinstance(key_id, str)
            or not isinstance(topics, dict)
            or set(topics)
            != {
                "audit",
                "checkpoints",
                "writers",
            }
        ):
            raise BundleFormatError(f"{MANIFEST}: key_id or topics not of the form")
        if not all(isinstance(name, str) for name in topics.values()):
            raise BundleFormatError(f"{MANIFEST}: a topic name is not a string")
        if not isinstance(members, dict) or not set(LISTED) <= set(members) <= {
            *LISTED,
            *OPTIONAL,
        }:
            raise BundleFormatError(
                f"{MANIFEST}: members must list exactly {list(LISTED)}, and {OPENED} if held"
            )
        listed: dict[str, tuple[str, int]] = {}
        for name, entry in members.items():
            if not isinstance(entry, dict) or set(entry) != {"sha256", "size"}:
                raise BundleFormatError(f"{MANIFEST}: member {name} is not {{sha256, size}}")
            digest = entry["sha256"]
            if not isinstance(digest, str) or len(digest) != 64:
                raise BundleFormatError(f"{MANIFEST}: member {name}'s sha256 is not 64 hex")
            listed[name] = (digest, _integer(entry, "size"))
        return cls(key_id, dict(topics), _integer(found, "records"), listed)


def sign_manifest(manifest: bytes, key: Ed25519PrivateKey) -> bytes:
    """The bytes of manifest.sig: the signature of `manifest` in unpadded base64url, LF."""
    return b64url(key.sign(manifest)).encode("ascii") + b"\n"


class BundleWriter:
    """Builds a bundle: NDJSON members are written line by line to files in `work` (they can
    be larger than memory), hashed as they go; `close()` writes the manifest, signs it and
    zips everything into `out` (through a temporary file, renamed once complete). `optional`:
    the members of `OPTIONAL` this bundle holds (listed, hashed and signed like the others)."""

    def __init__(self, work: Path, *, optional: tuple[str, ...] = ()) -> None:
        self._work = work
        self.listed = (*LISTED, *(name for name in OPTIONAL if name in optional))
        self._files: dict[str, IO[bytes]] = {}
        self._hashes = {name: hashlib.sha256() for name in self.listed}
        self._sizes = dict.fromkeys(self.listed, 0)
        self.counts = dict.fromkeys(self.listed, 0)
        for name in self.listed:
            self._files[name] = (work / name).open("wb")

    def add(self, member: str, data: bytes) -> None:
        """Append `data` (one line, or the whole of keys.json) to `member`."""
        self._files[member].write(data)
        self._hashes[member].update(data)
        self._sizes[member] += len(data)
        self.counts[member] += 1

    def close(
        self,
        out: Path,
        *,
        key: Ed25519PrivateKey,
        key_id: str,
        created: str,
        query: Mapping[str, str | None],
        topics: Mapping[str, str],
    ) -> None:
        """Write the manifest and its signature and zip the bundle to `out`."""
        for handle in self._files.values():
            handle.close()
        manifest = canonical_json(
            {
                "format": FORMAT,
                "created": created,
                "key_id": key_id,
                "query": dict(query),
                "topics": dict(topics),
                "records": self.counts[RECORDS],
                "members": {
                    name: {"sha256": self._hashes[name].hexdigest(), "size": self._sizes[name]}
                    for name in self.listed
                },
            }
        )
        partial = out.with_name(f".{out.name}.partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, manifest)
            archive.writestr(SIGNATURE, sign_manifest(manifest, key))
            for name in self.listed:
                archive.write(self._work / name, arcname=name)
        os.replace(partial, out)


@dataclass
class Bundle:
    """A bundle's members as read: bytes by name, names found twice, members unreadable."""

    members: dict[str, bytes]
    twice: list[str]
    unreadable: list[str]


def read_bundle(path: Path) -> Bundle:
    """Every member of the ZIP at `path`; BundleFormatError when it is not a ZIP or has no
    manifest (OSError when it cannot be read)."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise BundleFormatError(f"{path}: not a ZIP file") from exc
    members: dict[str, bytes] = {}
    twice: list[str] = []
    unreadable: list[str] = []
    with archive:
        for info in archive.infolist():
            if info.filename in members or info.filename in unreadable:
                twice.append(info.filename)
                continue
            try:
                members[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError):
                # A bad CRC-32 or bad deflate data: a finding, the member read as empty.
                unreadable.append(info.filename)
    if MANIFEST not in members and MANIFEST not in unreadable:
        raise BundleFormatError(f"{path}: no {MANIFEST}: not an evidence bundle")
    return Bundle(members, twice, unreadable)


def keys_document(keys: Sequence[Mapping[str, Any]]) -> bytes:
    """keys.json: `{"keys": [...]}` in canonical JSON."""
    return canonical_json({"keys": list(keys)})
