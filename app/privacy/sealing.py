"""The cryptography of erasure, with no I/O: a key-encryption key (KEK), the subject hash, data
keys wrapped by the KEK, and fields sealed under a data key.

Keys derived from the KEK (HKDF-SHA256, no salt, one `info` each) keep the uses apart: one
HMACs subjects (so the keys topic names no user), one wraps data keys.

A sealed field is one string, so a sealed event is still a valid `KafkaAuditEvent`:

    rg-enc:v1:<kid>:<nonce>:<ct>

`kid` is the data key's id (16 hex digits, random), `nonce` the 12-byte AES-GCM nonce and `ct`
the ciphertext with its 16-byte tag, both base64url without padding. The associated data is
the canonical JSON (sorted keys, no whitespace) of `{"event_id", "field", "kid", "subject", "v":
"v1"}`, `subject` being the subject hash: a sealed value cannot be moved to another event,
field, key version or subject without failing to open. A field of metadata is named
`metadata.<name>`.

A wrapped data key is AES-256-GCM of the 32 key bytes under the wrapping key, with the
associated data `rg-key:v1:<subject hash>:<kid>`, stored as base64url of nonce || ciphertext.
"""

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEALED_PREFIX = "rg-enc:v1:"
VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12


class SealingError(ValueError):
    """A KEK that cannot be read, a wrapped key that does not unwrap, a field that does not
    open: the message says which."""


def b64url(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """The bytes of base64url text with or without padding; `SealingError` when it is none."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SealingError(f"not base64url: {exc}") from None


def load_kek(path: Path) -> bytes:
    """The 32 KEK bytes of `path` (one line of standard base64); `SealingError` naming the
    problem (missing, unreadable, not base64, not 32 bytes)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SealingError(f"{path}: cannot read the key: {exc}") from None
    try:
        kek = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SealingError(f"{path}: not one line of base64") from None
    if len(kek) != KEY_BYTES:
        raise SealingError(f"{path}: the key is {len(kek)} bytes, 32 wanted")
    return kek


def _derive(kek: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(kek)


@dataclass(frozen=True, slots=True)
class DataKey:
    """A subject's data key: its id, the subject hash it belongs to, and the key bytes."""

    kid: str
    subject: str
    key: bytes
    # The cipher keyed once: constructing it per field costs more than sealing a short one.
    aead: AESGCM = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aead", AESGCM(self.key))


class Kek:
    """The key-encryption key: hashes subjects, wraps and unwraps data keys."""

    def __init__(self, kek: bytes) -> None:
        if len(kek) != KEY_BYTES:
            raise SealingError(f"a KEK is 32 bytes, not {len(kek)}")
        self._subject_key = _derive(kek, b"ractogateway-kafka erasure subject v1")
        self._wrap = AESGCM(_derive(kek, b"ractogateway-kafka erasure wrap v1"))

    def subject_hash(self, subject: str) -> str:
        """HMAC-SHA256 of `subject` under the KEK's subject key, hex: names a subject on the
        keys topic and in erasure records without naming the person."""
        return hmac.new(self._subject_key, subject.encode("utf-8"), hashlib.sha256).hexdigest()

    def new_key(self, subject_hash: str) -> DataKey:
        """A fresh random 256-bit data key for `subject_hash`."""
        return DataKey(secrets.token_hex(8), subject_hash, secrets.token_bytes(KEY_BYTES))

    def wrap(self, key: DataKey) -> str:
        """`key` wrapped (see the module docstring)."""
        nonce = os.urandom(NONCE_BYTES)
        return b64url(nonce + self._wrap.encrypt(nonce, key.key, _wrap_ad(key.subject, key.kid)))

    def unwrap(self, subject_hash: str, kid: str, wrapped: str) -> DataKey:
        """The data key `wrapped` holds; `SealingError` when it does not unwrap (another KEK,
        or bytes changed)."""
        raw = unb64url(wrapped)
        try:
            key = self._wrap.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _wrap_ad(subject_hash, kid)
            )
        except InvalidTag:
            raise SealingError(f"data key {kid} does not unwrap with this KEK") from None
        return DataKey(kid, subject_hash, key)


def _wrap_ad(subject_hash: str, kid: str) -> bytes:
    return f"rg-key:{VERSION}:{subject_hash}:{kid}".encode("ascii")


def _field_ad(event_id: str, name: str, kid: str, subject_hash: str) -> bytes:
    # The canonical JSON (sorted keys, no whitespace, ASCII escapes) of the associated data,
    # written out: json.dumps of a dict costs more than sealing a short field.
    return (
        f'{{"event_id":{encode_basestring_ascii(event_id)},'
        f'"field":{encode_basestring_ascii(name)},'
        f'"kid":{encode_basestring_ascii(kid)},'
        f'"subject":{encode_basestring_ascii(subject_hash)},"v":"{VERSION}"}}'
    ).encode()


def is_sealed(value: object) -> bool:
    """Whether `value` is a sealed field."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def kid_of(sealed: str) -> str:
    """The data key id a sealed field names; `SealingError` when it is not one."""
    parts = sealed.split(":")
    if len(parts) != 5 or not sealed.startswith(SEALED_PREFIX):
        raise SealingError("not a sealed field (rg-enc:v1:<kid>:<nonce>:<ct>)")
    return parts[2]


def seal(key: DataKey, event_id: str, name: str, plaintext: str) -> str:
    """`plaintext` sealed under `key`, bound to `event_id` and the field `name`."""
    nonce = os.urandom(NONCE_BYTES)
    ad = _field_ad(event_id, name, key.kid, key.subject)
    ct = key.aead.encrypt(nonce, plaintext.encode("utf-8"), ad)
    return f"{SEALED_PREFIX}{key.kid}:{b64url(nonce)}:{b64url(ct)}"


def open_sealed(key: DataKey, event_id: str, name: str, sealed: str) -> str:
    """The plaintext of `sealed`; `SealingError` when it does not open under `key` for this
    `event_id` and field `name`."""
    kid = kid_of(sealed)
    if kid != key.kid:
        raise SealingError(f"sealed under key {kid}, not {key.kid}")
    _, _, _, nonce, ct = sealed.split(":")
    ad = _field_ad(event_id, name, kid, key.subject)
    try:
        return key.aead.decrypt(unb64url(nonce), unb64url(ct), ad).decode("utf-8")
    except (InvalidTag, UnicodeDecodeError):
        raise SealingError(f"field {name} of event {event_id} does not open") from None
