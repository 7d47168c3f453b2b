"""Which audit records a signed checkpoint covers, for `checkpointed` in GET /messages.

This service's own writer is answered from its checkpointer (the latest checkpoint written, in
memory). Other writers (other instances, earlier starts of this one) are answered from their
checkpoints as the GET /messages reader reads them off the checkpoints topic — only with a
signing key, and only from its last RG_MESSAGES_BUFFER records (the reader's rewind): each
checkpoint trusted by `verify`'s rules (app/integrity/trust.py: signed with a key of GET
/audit/keys, its version 2 note opening with that key, inside that key's validity, by the
writer's own key, keyed by its writer) raises its writer's covered seq, and the positions
it lists as lost (void) show false. Checkpoints are parsed by
`Checkpoint.from_json`, `verify`'s parser, and checked over the same signed bytes: the two never
disagree on what a checkpoint says. A checkpoint that does not parse or is not trusted is
ignored: `verify` reports those, the view only does not trust them. At most `max_writers`
writers are kept, the least recently advanced dropped first (its records then show null:
unknown).
"""

import logging

from app.integrity.checkpoint import Checkpoint, CheckpointFormatError
from app.integrity.checkpointer import Checkpoints
from app.integrity.trust import CheckpointTrust
from app.integrity.writers import keyed_aside
from app.kafka import KafkaMessage

logger = logging.getLogger(__name__)

MAX_WRITERS = 1024

# Keys of records on the checkpoints topic that are not a writer's checkpoint.


class CheckpointCoverage:
    """`covers(writer, seq)`: true when a signed checkpoint known here covers that position,
    false when the writer's checkpoints known here stop below it, None when none is known."""

    def __init__(self, checkpoints: Checkpoints, *, max_writers: int = MAX_WRITERS) -> None:
        self._checkpoints = checkpoints
        self._max_writers = max_writers
        # writer id -> highest seq a trusted checkpoint covers; oldest advance first.
        self._covered: dict[str, int] = {}
        # writer id -> positions its trusted checkpoints list as lost (void): not covered.
        self._void: dict[str, set[int]] = {}
        # Made at the first record: the public keys are loaded when the service opens.
        self._trust: CheckpointTrust | None = None
        self.ignored = 0

    @property
    def writers(self) -> int:
        """Writers whose coverage is known from the checkpoints topic."""
        return len(self._covered)

    def add(self, message: KafkaMessage) -> bool:
        """Take a record of the checkpoints topic into account; False when it was ignored
        (not a checkpoint, not trusted: app/integrity/trust.py) or covered nothing new. A note
        of the log of writers, a timestamp token or a witness's cosignature (keyed `writers`,
        `timestamps`, `cosignatures`) is no writer's checkpoint: passed over."""
        if keyed_aside(message.key):
            return False
        try:
            checkpoint = Checkpoint.from_json(message.value)
        except CheckpointFormatError:
            self.ignored += 1
            return False
        writer = checkpoint.writer
        key = message.key.encode() if isinstance(message.key, str) else message.key
        if key != writer.encode():
            # Keyed otherwise than by its writer: not written as a checkpoint (verify's rule).
            self.ignored += 1
            return False
        # Version 2 repeats every earlier void: only voids not known yet are news.
        known = self._void.get(writer, set())
        if checkpoint.seq <= self._covered.get(writer, -1) and checkpoint.void.keys() <= known:
            return False  # nothing new: no signature to check
        if self._trust is None:
            self._trust = CheckpointTrust(
                self._checkpoints.public_keys, max_writers=self._max_writers
            )
        untrusted = self._trust.check(checkpoint)
        if untrusted is not None:
            self.ignored += 1
            logger.debug(
                "checkpoint at %s/%d/%d not trusted for GET /messages: %s",
                message.topic,
                message.partition,
                message.offset,
                untrusted.detail,
            )
            return False
        if checkpoint.void:
            self._void.setdefault(writer, set()).update(checkpoint.void)
        covered = max(checkpoint.seq, self._covered.pop(writer, -1))
        self._covered[writer] = covered
        if len(self._covered) > self._max_writers:
            dropped = next(iter(self._covered))
            del self._covered[dropped]
            self._void.pop(dropped, None)
        return True

    def covers(self, writer: str, seq: int) -> bool | None:
        """Whether a signed checkpoint known here covers position `seq` of `writer` (the
        `Coverage` of app/recent/buffer.py). It says the position is covered; whether the
        record there is the one its writer stored is for `verify` to say. A position the
        writer's checkpoints list as lost is not covered: a record there is not the writer's."""
        own = self._checkpoints.covers(writer, seq)
        if own is not None:
            return own
        covered = self._covered.get(writer)
        if covered is None:
            return None
        return seq <= covered and seq not in self._void.get(writer, ())
