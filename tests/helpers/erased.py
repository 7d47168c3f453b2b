"""A trail in which one subject was erased (docs/privacy.md), as values for a bundle made
without a broker (bench/goverifier.py's make_bundle): records of another user in clear, the
subject's records sealed under its data key as the service seals them, then the erasure record
the service writes; the data key is not kept, as the erasure destroys it."""

import secrets
from typing import TYPE_CHECKING, cast

from app.ingest.erasures import ERASURE_MODEL, ERASURE_USER
from app.kafka import KafkaAuditEvent
from app.privacy.erasure import Erasure
from app.privacy.sealing import Kek, is_sealed

if TYPE_CHECKING:
    from app.privacy.keystore import KeyStore

SUBJECT = "user-erased"


def erased_subject_values(sealed: int = 4, clear: int = 3) -> list[bytes]:
    """`clear` records of another user, `sealed` of SUBJECT sealed, then its erasure record."""
    kek = Kek(secrets.token_bytes(32))
    subject_hash = kek.subject_hash(SUBJECT)
    key = kek.new_key(subject_hash)
    # Sealing one event takes the key it is given: the key store is not asked.
    sealer = Erasure(cast("KeyStore", None), kek)
    values = [
        KafkaAuditEvent(
            user_id="user-kept", model="m", prompt=f"p{i}", response="r"
        ).canonical_json()
        for i in range(clear)
    ]
    for i in range(sealed):
        event = KafkaAuditEvent(
            user_id=SUBJECT, model="m", prompt=f"secret prompt {i}", response="secret answer"
        )
        closed = sealer.seal_event(event, key)
        assert is_sealed(closed.prompt)
        assert is_sealed(closed.response)
        values.append(closed.canonical_json())
    erasure = KafkaAuditEvent(
        user_id=ERASURE_USER,
        model=ERASURE_MODEL,
        prompt=f"erase subject {subject_hash}",
        response=f"keys destroyed: {key.kid}",
        metadata={
            "rg_erasure": {"v": 1, "subject": subject_hash, "kids": [key.kid], "reason": "Art. 17"}
        },
    )
    values.append(erasure.canonical_json())
    return values
