"""POST /audit/erase and GET /audit/erase/{id} below the routes: an erasure record on the
trail, then the subject's keys destroyed, then the subject purged from GET /messages.

The erasure record is an audit record like any other (receipted, chained, checkpointed), never
sealed and holding no personal data:

    user_id "rg-erasure", model "rg-erasure/v1", prompt "erase subject <hash>",
    response "keys destroyed: <kid>,...", metadata {"rg_erasure": {"v": 1, "subject",
    "kids", "reason"}}

It is written first (acks=all), then the keys are destroyed: an erasure whose keys could not be
destroyed answers 503, and its retry writes a second record and destroys them. `reason` is the
caller's text, stored as given: it must name no person.
"""

from collections.abc import Callable
from dataclasses import dataclass

from app.errors import UnknownErasureError, UnknownSubjectError
from app.ingest.audit_trail import AuditTrail
from app.ingest.receipts import AuditReceipt
from app.kafka import KafkaAuditEvent
from app.privacy.erasure import Erasure

ERASURE_USER = "rg-erasure"
ERASURE_MODEL = "rg-erasure/v1"


@dataclass(frozen=True, slots=True)
class ErasureProgress:
    """Where an erasure stands: its keys tombstoned, and whether they are gone from the
    segments of the keys topic."""

    erasure_id: str
    subject_hash: str
    kids: list[str]
    gone_from_segments: bool


class Erasures:
    """Erases subjects: see the module docstring. `purge(kids)` drops the records sealed under
    `kids` from the GET /messages buffer (the read path's, handed in by the service)."""

    def __init__(
        self, erasure: Erasure, trail: AuditTrail, *, purge: Callable[[list[str]], int]
    ) -> None:
        self._erasure = erasure
        self._trail = trail
        self._purge = purge

    async def erase(self, subject: str, reason: str) -> AuditReceipt:
        """Erase `subject`: the erasure record's receipt (acked). `UnknownSubjectError` when
        it has no key; `ErasureKeysUnavailableError` and the library's errors when Kafka does
        not take it."""
        store = self._erasure.store
        subject_hash = self._erasure.kek.subject_hash(subject)
        kids = store.kids_of(subject_hash)
        if not kids:
            raise UnknownSubjectError(
                "no key of that subject: nothing of it was written sealed, or it was erased"
            )
        event = KafkaAuditEvent(
            user_id=ERASURE_USER,
            model=ERASURE_MODEL,
            prompt=f"erase subject {subject_hash}",
            response=f"keys destroyed: {','.join(kids)}",
            metadata={
                "rg_erasure": {"v": 1, "subject": subject_hash, "kids": kids, "reason": reason}
            },
        )
        receipt = await self._trail.record(event, wait=True)
        await store.destroy(subject_hash, event.event_id)
        self._purge(kids)
        return receipt

    async def progress(self, erasure_id: str) -> ErasureProgress:
        """Where the erasure `erasure_id` stands; `UnknownErasureError` when no erasure of
        that id is known (from this replica or the keys topic)."""
        store = self._erasure.store
        found = store.erasure(erasure_id)
        if found is None:
            raise UnknownErasureError(f"no erasure record {erasure_id!r} is known")
        subject_hash, kids = found
        stored = await store.still_stored(subject_hash, kids)
        return ErasureProgress(erasure_id, subject_hash, kids, gone_from_segments=not stored)
