"""Files a witness kept, for `verify --checkpoint FILE`: which of the four forms a file holds, read
strictly, and whether a writer's kept tree head opens with the keys given.

The forms (docs/integrity.md, "Kept checkpoints"):
- a JSON checkpoint (GET /audit/checkpoint; versions 1 and 2): a record of the checkpoints topic;
- a note of the log of writers (GET /audit/checkpoint?log=writers): origin `<name>/writers`;
- a writer's note (GET /audit/checkpoint?log=<writer id>): a C2SP tlog-checkpoint of origin
  `<name>/writer/<writer id>`, no extension line;
- a tlog-proof (GET /audit/proof): c2sp.org/tlog-proof@v1 whose checkpoint is a writer's note,
  whose `extra` is the leaf entry of its index, and whose hashes lead from that leaf to the note's
  root.
The last two give a writer's tree head without a link or a void list (`KeptHead`). `read_kept`
checks the form (and a proof's inclusion, which needs no key); `open_kept` the signature.
"""

import re
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.integrity.checkpoint import Checkpoint, CheckpointFormatError
from app.integrity.merkle import ProofError, leaf_hash, read_leaf_entry, verify_inclusion
from app.integrity.note import (
    PROOF_HEADER,
    NoteError,
    TlogProof,
    TreeHead,
    Verifier,
    open_note,
    parse_note,
)
from app.integrity.writers import writers_log

_WRITER = re.compile(r"[0-9a-f]{32}")

Form = Literal["checkpoint", "writers", "writer", "proof"]


class KeptFormatError(ValueError):
    """A kept file that is none of the four forms, or a proof that does not hold."""


@dataclass(frozen=True)
class KeptHead:
    """A writer's signed tree head a witness kept: `size` positions with root `root`, in the
    signed note `note` (not yet opened). A proof also names the record it proves: `proven` is
    its position and the record's leaf tail (`merkle.leaf_tail`: its digest, 64 hex, and a
    framed value's schema id)."""

    writer: str
    size: int
    root: bytes
    name: str  # the key name the origin is under (RG_AUDIT_LOG_ORIGIN)
    note: bytes
    proven: tuple[int, str] | None = None


@dataclass(frozen=True)
class Kept:
    """What a kept file holds: its form, and the tree head of a writer's note or proof."""

    form: Form
    head: KeptHead | None = None


def read_kept(data: bytes) -> Kept:
    """The form of a kept file, read strictly; KeptFormatError says why it is none."""
    if data.lstrip()[:1] == b"{":
        try:
            Checkpoint.from_json(data)
        except CheckpointFormatError as exc:
            raise KeptFormatError(f"not a checkpoint: {exc}") from exc
        return Kept("checkpoint")
    try:
        if data.startswith(PROOF_HEADER.encode() + b"\n"):
            return Kept("proof", _proof_head(data))
        note = parse_note(data)
        head = TreeHead.parse(note.text)
    except (NoteError, ProofError) as exc:
        raise KeptFormatError(str(exc)[:200]) from exc
    names = {signature.name for signature in note.signatures}
    if any(head.origin == writers_log(name) for name in names):
        if head.extensions:
            raise KeptFormatError("a note of the log of writers has no extension lines")
        return Kept("writers")
    return Kept("writer", _writer_head(head, names, data))


def _writer_head(head: TreeHead, names: set[str], note: bytes) -> KeptHead:
    name, _, writer = head.origin.rpartition("/writer/")
    if name not in names or not _WRITER.fullmatch(writer):
        raise KeptFormatError(
            f"the origin {head.origin[:120]!r} is neither <name>/writers nor "
            "<name>/writer/<32 hex> under the key name of one of its signatures"
        )
    if head.extensions:
        raise KeptFormatError("a writer's note has no extension lines")
    if head.size == 0:
        raise KeptFormatError("a writer's note of size 0 covers nothing")
    return KeptHead(writer, head.size, head.root, name, note)


def _proof_head(data: bytes) -> KeptHead:
    proof = TlogProof.parse(data)
    note = parse_note(proof.checkpoint)
    head = _writer_head(
        TreeHead.parse(note.text), {s.name for s in note.signatures}, proof.checkpoint
    )
    if proof.extra is None:
        raise KeptFormatError("the proof has no extra line: it does not say which record")
    try:
        writer, seq, tail = read_leaf_entry(proof.extra)
    except ValueError as exc:
        raise KeptFormatError(f"the extra data: {exc}") from exc
    if (writer, seq) != (head.writer, proof.index):
        raise KeptFormatError("the leaf entry names another writer or position than the proof")
    if proof.index >= head.size:
        raise KeptFormatError(f"index {proof.index} is not below the tree size {head.size}")
    try:
        verify_inclusion(proof.index, head.size, leaf_hash(proof.extra), proof.hashes, head.root)
    except ProofError as exc:
        raise KeptFormatError(f"the inclusion proof does not hold: {exc}") from exc
    return KeptHead(head.writer, head.size, head.root, head.name, head.note, (proof.index, tail))


def open_kept(head: KeptHead, keys: list[Ed25519PublicKey]) -> str | None:
    """None when `head`'s note opens with one of `keys` under the key name of its origin (a
    known key's signature that does not verify fails it); else why not."""
    verifiers = [Verifier.of(head.name, key) for key in keys]
    try:
        open_note(head.note, verifiers)
    except NoteError as exc:
        return f"the note does not open with a key given under {head.name!r}: {exc}"
    return None
