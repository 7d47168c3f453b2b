"""Signing keys: the service's Ed25519 private key and the public keys witnesses check with.

The private key is a PEM file (PKCS#8, unencrypted) named by RG_AUDIT_SIGNING_KEY_FILE; its id
is RG_AUDIT_KEY_ID, or else the first 16 hex digits of SHA-256 over the raw 32-byte public key.
Keys rotate: a new key gets a new id, and the old public keys go in RG_AUDIT_RETIRED_KEYS_DIR
as `<key_id>.pem`, so checkpoints signed before the rotation still verify. `generate()` is what
`ractogateway-kafka keys generate` runs. A key that cannot be used is a `SigningKeyError` at
start: the service refuses to start (exit status 3) naming the file; so is a private key file
others may read (`key_file_exposure`; RG_ALLOW_INSECURE_KEY_FILES=true overrides, with a
warning).
"""

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "ed25519"
logger = logging.getLogger(__name__)

PRIVATE_SUFFIX = ".key.pem"
PUBLIC_SUFFIX = ".pub.pem"


class SigningKeyError(Exception):
    """A key file that is missing, unreadable or not an Ed25519 key; the message names it."""


@dataclass(frozen=True)
class PublicKey:
    """A public key by id, as GET /audit/keys serves it."""

    key_id: str
    key: Ed25519PublicKey
    current: bool
    # The end of a retired key's validity: checkpoints dated later are not trusted. None: no end.
    until: datetime | None = None

    @property
    def pem(self) -> str:
        """SubjectPublicKeyInfo PEM."""
        return public_pem(self.key).decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """The service's private key and its id."""

    key_id: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self.private.public_key()


def public_pem(key: Ed25519PublicKey) -> bytes:
    """A public key as SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def derived_key_id(key: Ed25519PublicKey) -> str:
    """The default key id: 16 hex digits of SHA-256 over the raw public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{what} {path}: cannot read it: {exc.strerror or exc}") from exc


def key_file_exposure(path: Path) -> str | None:
    """Who besides this user may read the private key file at `path`, or None.

    One rule for every private key the service reads (the signing key, the redaction key),
    as ssh has: others must not read it, nor its group while the file is this user's own.
    A group-readable file owned by someone else passes: Kubernetes mounts a secret owned by
    root and readable by the pod's fsGroup only (0440), the one way the service's user reads
    it (the chart does so)."""
    try:
        status = path.stat()
    except OSError:
        return None  # reading it says why, naming the setting
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o004:
        return f"others may read it (mode {mode:04o})"
    if mode & 0o040 and status.st_uid == os.geteuid():
        return f"its group may read it (mode {mode:04o})"
    return None


def insecure_key_file(path: Path, setting: str, *, allow_insecure: bool) -> str | None:
    """The one-line refusal for an exposed private key file, or None when it may be used.
    With `allow_insecure` (RG_ALLOW_INSECURE_KEY_FILES) an exposed file is used and one
    warning names it."""
    exposure = key_file_exposure(path)
    if exposure is None:
        return None
    if allow_insecure:
        logger.warning(
            "%s %s: %s; used as RG_ALLOW_INSECURE_KEY_FILES says", setting, path, exposure
        )
        return None
    return (
        f"{setting} {path}: {exposure}: `chmod 600 {path}`, "
        "or RG_ALLOW_INSECURE_KEY_FILES=true to start anyway"
    )


def load_signing_key(
    path: Path, key_id: str | None = None, *, allow_insecure: bool = False
) -> SigningKey:
    """The Ed25519 private key in PEM (PKCS#8) at `path`, with `key_id` or the derived id.
    A file others may read is refused unless `allow_insecure` (`insecure_key_file`)."""
    what = "RG_AUDIT_SIGNING_KEY_FILE"
    refusal = insecure_key_file(path, what, allow_insecure=allow_insecure)
    if refusal is not None:
        raise SigningKeyError(refusal)
    data = _read(path, what)
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{what} {path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(
            f"{what} {path}: a {type(private).__name__.removeprefix('_')}, not an Ed25519 key "
            "(`ractogateway-kafka keys generate` writes one)"
        )
    return SigningKey(key_id or derived_key_id(private.public_key()), private)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in PEM at `path`."""
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"public key {path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"public key {path}: not an Ed25519 key")
    return key


def parse_until(text: str) -> datetime:
    """The end of a key's validity: RFC 3339 with its offset, as UTC; ValueError otherwise."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        raise ValueError(f"no offset (Z or +hh:mm) in {text.strip()!r}")
    return moment.astimezone(UTC)


def retired_keys(directory: Path) -> list[PublicKey]:
    """The `<key_id>.pem` public keys of RG_AUDIT_RETIRED_KEYS_DIR, sorted by id, each valid
    until the RFC 3339 time in `<key_id>.until` beside it (without one: logged, and no end)."""
    if not directory.is_dir():
        raise SigningKeyError(f"RG_AUDIT_RETIRED_KEYS_DIR {directory}: not a folder")
    keys = []
    for path in sorted(directory.glob("*.pem")):
        key_id = path.name.removesuffix(".pem")
        until_file = path.with_suffix(".until")
        until = None
        if until_file.exists():
            try:
                until = parse_until(_read(until_file, "retired key").decode("utf-8"))
            except ValueError as exc:
                raise SigningKeyError(f"retired key {until_file}: not an RFC 3339 time") from exc
        else:
            logger.warning(
                "retired key %r has no end of validity (write the time it was retired, RFC 3339, "
                "to %s): checkpoints it signs are trusted whatever their date",
                key_id,
                until_file,
            )
        keys.append(PublicKey(key_id, load_public_key(path), current=False, until=until))
    return keys


def public_keys(signing: SigningKey | None, retired_dir: Path | None) -> list[PublicKey]:
    """The current public key (if any) first, then the retired ones; a retired file with the
    current id is left out (the current key is served once)."""
    keys = [] if signing is None else [PublicKey(signing.key_id, signing.public, current=True)]
    if retired_dir is not None:
        keys += [
            k for k in retired_keys(retired_dir) if signing is None or k.key_id != signing.key_id
        ]
    return keys


def generate(out_dir: Path, key_id: str | None = None) -> tuple[str, Path, Path]:
    """Write a new key pair to `out_dir`: `<id>.key.pem` (PKCS#8, mode 0600) and
    `<id>.pub.pem`; returns the id and both paths. Refuses to overwrite a file."""
    private = Ed25519PrivateKey.generate()
    key_id = key_id or derived_key_id(private.public_key())
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path = out_dir / f"{key_id}{PRIVATE_SUFFIX}"
    public_path = out_dir / f"{key_id}{PUBLIC_SUFFIX}"
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: never replace a key; 0o600 from the first byte, not chmod after the write.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    with public_path.open("xb") as file:
        file.write(public_pem(private.public_key()))
    return key_id, private_path, public_path
