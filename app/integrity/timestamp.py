"""Trusted time: RFC 3161 timestamps over the notes of the log of writers (docs/integrity.md,
"Trusted time").

What is stamped: the `note` of a `WritersNote` (app/integrity/writers.py), the whole C2SP signed
note — its text and its signature line, exactly the bytes GET /audit/checkpoint?log=writers
serves — encoded as UTF-8. The message imprint is SHA-256 of those bytes. A request carries a
random 64-bit nonce and asks for the authority's certificate (certReq true).

The service keeps each token on the checkpoints topic keyed `timestamps`, as the canonical JSON
(sorted keys, "," and ":", UTF-8) of

    {"version": 1, "origin": "<name>/writers", "size", "root": "sha256:<hex>",
     "note_sha256": "<hex>", "note_time", "tsa": "<url>", "nonce": "<decimal>",
     "token": "<base64>", "time"}

`size`, `root` and `note_time` are those of the note's envelope (the record of the checkpoints
topic keyed `writers` that the token stamps), `note_sha256` the imprint, `token` the
authority's whole answer (a DER TimeStampResp: status and TimeStampToken, what `openssl ts
-reply` writes and `openssl ts -verify -in` reads) in standard base64, `time` the token's
genTime (RFC 3339). The envelope is not signed: every field that matters is checked against the
token and against the signed note it names. Pure code: the service and `verify` import it.
"""

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

if TYPE_CHECKING:
    # Imported where a token is asked for or checked: about 4 MB of memory that a service
    # without RG_AUDIT_TSA_URL would keep for nothing.
    from rfc3161_client import TimeStampResponse

from app.integrity.checkpoint import CHAIN_PREFIX, canonical_json, rfc3339
from app.integrity.writers import TIMESTAMPS_KEY

__all__ = [
    "TIMESTAMPS_KEY",
    "Stamp",
    "TimestampError",
    "TimestampQuery",
    "TimestampRecord",
    "check_reply",
    "load_tsa_roots",
    "note_sha256",
    "stamp_time",
    "timestamp_query",
]

_SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,39}")
MAX_BYTES = 64 * 1024


class TimestampError(ValueError):
    """A token (or its record) that does not prove what it should: the message says why."""


def note_sha256(note: str) -> bytes:
    """The message imprint of a note of the log of writers: SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(note.encode("utf-8")).digest()


@dataclass(frozen=True)
class TimestampQuery:
    """A TimeStampReq (DER) over a note, and the nonce it carries."""

    der: bytes
    nonce: int


def timestamp_query(note: str) -> TimestampQuery:
    """The request for a token over `note`: SHA-256 imprint, a random 64-bit nonce, certReq."""
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder  # noqa: PLC0415 - above

    request = (
        TimestampRequestBuilder()
        .data(note.encode("utf-8"))
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    if request.nonce is None:  # the builder always sets one; a request without is refused
        raise TimestampError("the request carries no nonce")
    return TimestampQuery(request.as_bytes(), request.nonce)


def load_tsa_roots(path: Path) -> list[x509.Certificate]:
    """The certificates of a PEM file (the authority's CA, and any intermediates); ValueError
    when there are none or the file cannot be read."""
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable PEM file of certificates") from exc
    return certificates


@dataclass(frozen=True)
class Stamp:
    """What a checked token says: when (genTime) the authority saw the imprint, its nonce,
    serial number and signer."""

    gen_time: datetime
    nonce: int
    serial: int
    signer: str


def check_reply(
    reply: bytes,
    imprint: bytes,
    roots: list[x509.Certificate],
    *,
    nonce: int | None,
) -> Stamp:
    """Check an authority's answer (a DER TimeStampResp): status granted, the signature chains
    to one of `roots` (valid at genTime), the signer's certificate has the critical
    timeStamping key usage, the imprint is SHA-256 and equals `imprint`, the nonce is `nonce`.
    TimestampError naming the first thing wrong."""
    from rfc3161_client import PKIStatus, decode_timestamp_response  # noqa: PLC0415 - above

    if not roots:
        raise TimestampError("no CA certificate to check the token against")
    try:
        response = decode_timestamp_response(reply)
    except ValueError as exc:
        raise TimestampError(f"not a TimeStampResp: {str(exc)[:120]}") from exc
    if PKIStatus(response.status) not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        said = "; ".join(response.status_string)[:120]
        raise TimestampError(
            f"the authority did not grant the token (status {response.status}"
            f"{': ' + said if said else ''})"
        )
    info = response.tst_info
    if info.message_imprint.hash_algorithm != _SHA256_OID:
        raise TimestampError("the token's imprint is not SHA-256")
    if info.message_imprint.message != imprint:
        raise TimestampError(
            f"the token stamps sha256:{info.message_imprint.message.hex()}, not this note "
            f"(sha256:{imprint.hex()})"
        )
    if nonce is not None and info.nonce != nonce:
        raise TimestampError(f"the token's nonce {info.nonce} is not the request's {nonce}")
    _verify(response, imprint, roots)
    signer = next(iter(response.signed_data.signer_infos), None)
    return Stamp(
        info.gen_time.astimezone(UTC),
        info.nonce,
        info.serial_number,
        "" if signer is None else signer.issuer.rfc4514_string(),
    )


def _verify(response: "TimeStampResponse", imprint: bytes, roots: list[x509.Certificate]) -> None:
    from rfc3161_client import VerificationError, VerifierBuilder  # noqa: PLC0415 - above

    builder = VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify(response, imprint)
    except (VerificationError, ValueError) as exc:
        raise TimestampError(f"the token does not verify: {str(exc)[:200]}") from exc


@dataclass(frozen=True)
class TimestampRecord:
    """A token as kept on the checkpoints topic keyed `timestamps` (the module docstring)."""

    origin: str
    size: int
    root: str  # 64 hex
    note_sha256: str  # 64 hex
    note_time: str
    tsa: str
    nonce: int
    token: bytes
    time: str

    def to_bytes(self) -> bytes:
        """The record value: canonical JSON."""
        fields: dict[str, Any] = {
            "version": 1,
            "origin": self.origin,
            "size": self.size,
            "root": CHAIN_PREFIX + self.root,
            "note_sha256": self.note_sha256,
            "note_time": self.note_time,
            "tsa": self.tsa,
            "nonce": str(self.nonce),
            "token": base64.b64encode(self.token).decode("ascii"),
            "time": self.time,
        }
        return canonical_json(fields)

    @classmethod
    def from_json(cls, data: bytes | None) -> "TimestampRecord":
        """Parse a record value strictly; TimestampError for anything else."""
        if data is None or len(data) > MAX_BYTES:
            raise TimestampError("not a timestamp record (no value or too long)")
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise TimestampError(f"not JSON: {str(exc)[:80]}") from exc
        fields = {
            "version", "origin", "size", "root", "note_sha256", "note_time", "tsa", "nonce",
            "token", "time",
        }  # fmt: skip
        if not isinstance(value, dict) or value.keys() != fields or value["version"] != 1:
            raise TimestampError(f"a timestamp record is version 1 of fields {sorted(fields)}")
        size, root, digest = value["size"], value["root"], value["note_sha256"]
        if type(size) is not int or size < 1:
            raise TimestampError("size is not a positive integer")
        if not (
            isinstance(root, str) and root.startswith(CHAIN_PREFIX) and _HEX64.fullmatch(root, 7)
        ):
            raise TimestampError("root is not sha256:<64 lowercase hex>")
        if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
            raise TimestampError("note_sha256 is not 64 lowercase hex")
        texts = ("origin", "note_time", "tsa", "nonce", "token", "time")
        if not all(isinstance(value[name], str) for name in texts):
            raise TimestampError(f"{', '.join(texts)} are strings")
        if not _DECIMAL.fullmatch(value["nonce"]):
            raise TimestampError("nonce is not a decimal number")
        try:
            token = base64.b64decode(value["token"], validate=True)
        except binascii.Error as exc:
            raise TimestampError("token is not base64") from exc
        return cls(
            value["origin"],
            size,
            root[7:],
            digest,
            value["note_time"],
            value["tsa"],
            int(value["nonce"]),
            token,
            value["time"],
        )


def stamp_time(stamp: Stamp) -> str:
    """A token's genTime as the record's `time`."""
    return rfc3339(stamp.gen_time)
