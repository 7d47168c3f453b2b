"""Which signed checkpoints to trust: the one rule set of `verify` and the coverage view.

Checkpoints are fed in the order of the checkpoints topic (one partition: the order they were
written). A checkpoint is trusted when
- its `key_id` names a key given, and the signature over its signed bytes verifies with it,
  and (version 2) its note opens with that same key under the note's key name (else
  `bad_signature`);
- its `time` is inside the key's validity: a retired key has an end (`until`, from
  `<key_id>.until` in RG_AUDIT_RETIRED_KEYS_DIR or `verify --public-key FILE@UNTIL`), and a
  checkpoint dated after it, or read after a trusted checkpoint dated after it (so written after
  the key's successor took over, whatever date it claims), is `expired_key`;
- its writer's checkpoints were all signed with the same key: a writer is one run of one service,
  which signs with one key, so the key of the writer's first trusted checkpoint is the writer's
  and a checkpoint of it with another key is `key_mismatch`. Whoever holds a retired private key
  thus cannot speak for writers another key signed for, nor add anything once it is retired.
Only trusted checkpoints count: what they cover, and the `void` positions they list.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from app.integrity.checkpoint import Checkpoint, rfc3339, verify_note, verify_signature
from app.integrity.keys import PublicKey


@dataclass(frozen=True)
class Untrusted:
    """Why a checkpoint is not trusted: a kind of problem `verify` reports, and a detail."""

    kind: str
    detail: str


class CheckpointTrust:
    """`check(checkpoint)`: None when trusted (then remembered), else why not. `max_writers`
    bounds the writers remembered (the least recently trusted dropped first); None: all."""

    def __init__(self, keys: Iterable[PublicKey], *, max_writers: int | None = None) -> None:
        self._keys = {key.key_id: key for key in keys}
        self._max_writers = max_writers
        self._writer_keys: dict[str, str] = {}
        self._latest: datetime | None = None  # the latest time of a trusted checkpoint read

    def check(self, checkpoint: Checkpoint) -> Untrusted | None:
        """Whether to trust `checkpoint`, read after the ones checked before."""
        key_id, writer = checkpoint.key_id, checkpoint.writer
        bad = self._bad_signature(checkpoint)
        if bad is not None:
            return Untrusted("bad_signature", bad)
        key = self._keys[key_id]
        moment = checkpoint.moment()
        if key.until is not None:
            until = rfc3339(key.until)
            if moment > key.until:
                return Untrusted(
                    "expired_key",
                    f"dated {checkpoint.time}, after key {key_id!r} was retired ({until})",
                )
            if self._latest is not None and self._latest > key.until:
                return Untrusted(
                    "expired_key",
                    f"signed with key {key_id!r} (retired {until}) but written after a "
                    f"checkpoint dated {rfc3339(self._latest)}",
                )
        bound = self._writer_keys.pop(writer, key_id)
        self._writer_keys[writer] = bound  # most recently trusted last
        if bound != key_id:
            return Untrusted(
                "key_mismatch",
                f"writer {writer} signs with key {bound!r}, this checkpoint with {key_id!r}",
            )
        if self._max_writers is not None and len(self._writer_keys) > self._max_writers:
            del self._writer_keys[next(iter(self._writer_keys))]
        if self._latest is None or moment > self._latest:
            self._latest = moment
        return None

    def _bad_signature(self, checkpoint: Checkpoint) -> str | None:
        """Why `checkpoint` is not signed by the key its `key_id` names, or None."""
        key_id = checkpoint.key_id
        key = self._keys.get(key_id)
        if key is None:
            return f"unknown key id {key_id!r}"
        if not verify_signature(checkpoint, key.key):
            return f"signature does not verify with key {key_id!r}"
        if not verify_note(checkpoint, key.key):
            return f"note does not open with key {key_id!r}"
        return None
