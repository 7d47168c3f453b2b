"""Which audit records a signed checkpoint covers, for `checkpointed` in GET /messages.

This service's own writer is answered from its checkpointer (the latest checkpoint written, in
memory). Other writers (other instances, earlier starts of this one) are answered from their
checkpoints as the GET /messages reader reads them off the checkpoints topic — only with a
signing key, and only from its last RG_MESSAGES_BUFFER records (the reader's rewind): each
checkpoint whose signature verifies with a key of GET /audit/keys (this service's key or a
retired one) raises its writer's covered seq. Checkpoints are parsed by `Checkpoint.from_json`,
`verify`'s parser, and checked over the same signed bytes: the two never disagree on what a
checkpoint says. A checkpoint that does not parse, names an unknown key or fails its signature
is ignored: `verify` reports those, the view only does not trust them. At most `max_writers`
writers are kept, the least recently advanced dropped first (its records then show null:
unknown).
"""

import logging

from app.integrity.checkpoint import Checkpoint, CheckpointFormatError, verify_signature
from app.integrity.checkpointer import Checkpoints
from app.kafka import KafkaMessage

logger = logging.getLogger(__name__)

MAX_WRITERS = 1024


class CheckpointCoverage:
    """`covers(writer, seq)`: true when a signed checkpoint known here covers that position,
    false when the writer's checkpoints known here stop below it, None when none is known."""

    def __init__(self, checkpoints: Checkpoints, *, max_writers: int = MAX_WRITERS) -> None:
        self._checkpoints = checkpoints
        self._max_writers = max_writers
        # writer id -> highest seq a verified checkpoint covers; oldest advance first.
        self._covered: dict[str, int] = {}
        self.ignored = 0

    @property
    def writers(self) -> int:
        """Writers whose coverage is known from the checkpoints topic."""
        return len(self._covered)

    def add(self, message: KafkaMessage) -> bool:
        """Take a record of the checkpoints topic into account; False when it was ignored
        (not a checkpoint, an unknown key, a bad signature) or covered nothing new."""
        try:
            checkpoint = Checkpoint.from_json(message.value)
        except CheckpointFormatError:
            self.ignored += 1
            return False
        if checkpoint.seq <= self._covered.get(checkpoint.writer, -1):
            return False  # nothing new: no signature to check
        keys = {key.key_id: key.key for key in self._checkpoints.public_keys}
        key = keys.get(checkpoint.key_id)
        if key is None or not verify_signature(checkpoint, key):
            self.ignored += 1
            logger.debug(
                "checkpoint at %s/%d/%d not trusted for GET /messages (key %r)",
                message.topic,
                message.partition,
                message.offset,
                checkpoint.key_id,
            )
            return False
        self._covered.pop(checkpoint.writer, None)
        self._covered[checkpoint.writer] = checkpoint.seq
        if len(self._covered) > self._max_writers:
            del self._covered[next(iter(self._covered))]
        return True

    def covers(self, writer: str, seq: int) -> bool | None:
        """Whether a signed checkpoint known here covers position `seq` of `writer` (the
        `Coverage` of app/recent/buffer.py). It says the position is covered; whether the
        record there is the one its writer stored is for `verify` to say."""
        own = self._checkpoints.covers(writer, seq)
        if own is not None:
            return own
        covered = self._covered.get(writer)
        return None if covered is None else seq <= covered
