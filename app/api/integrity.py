"""GET /audit/checkpoint and GET /audit/keys: what an outside witness fetches and keeps.

No API key is needed: a checkpoint says only where this writer's chain and tree stand (seq,
link, root, time), signed; the public keys are public. A witness that keeps checkpoints can later
prove that the trail below them was not cut or rewritten (see docs/operations.md). The
checkpoint's `note` is a C2SP signed note that transparency-log tools open with the key's
`verifier_key` (docs/integrity.md).
"""

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.api.deps import ServicesDep
from app.api.errors import ErrorBody, error_responses
from app.errors import InvalidRequestError, NoCheckpointError, UnsignedError
from app.integrity.cosigner import Cosigner
from app.integrity.note import TreeHead, parse_note, verifier_key
from app.integrity.witness import with_cosignatures

router = APIRouter(tags=["integrity"])

_WRITER = re.compile(r"[0-9a-f]{32}")
_NOTE_EXAMPLE = (
    "ractogateway-kafka/ractogateway.audit/writers\n"
    "7\n"
    "yCu5q/FBo4j66959CUc9fEftoy0FUy9gtCLP6DO78pA=\n"
    "\n"
    "\u2014 ractogateway-kafka/ractogateway.audit P82iDH7C...\n"
)

EXAMPLE_CHECKPOINT: dict[str, Any] = {
    "version": 2,
    "writer": "4f1c0a9e2b7d4c3a8e6f5d1b0c9a8e7f",
    "seq": 41,
    "count": 42,
    "chain": "sha256:" + "9b" * 32,
    "tree": "sha256:" + "5e" * 32,
    "time": "2026-03-01T12:00:00.123456Z",
    "key_id": "3f9a0c1b2d4e5f60",
    "void": {},
    "note": "ractogateway-kafka/ractogateway.audit/4f1c0a9e2b7d4c3a8e6f5d1b0c9a8e7f\n42\n"
    "Xl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl4=\n\n"
    "\u2014 ractogateway-kafka/ractogateway.audit " + "x" * 91 + "=\n",
    "signature": "x" * 86,
}


class SignedCheckpoint(BaseModel):
    """A signed checkpoint, version 2 (docs/integrity.md, "Checkpoints, version 2"): the
    writer's chain holds positions 0..seq and link `chain` at `seq`, its Merkle tree over them
    has root `tree`; `note` says the same as a C2SP signed note; `signature` is Ed25519 over the
    canonical JSON of the other fields."""

    version: int
    writer: str = Field(description="The writer id: 32 lowercase hex characters.")
    seq: int = Field(description="The last sequence number covered.")
    count: int = Field(description="Positions covered: seq + 1.")
    chain: str = Field(description="sha256:<64 hex>, the chain link at `seq`.")
    tree: str = Field(
        description="sha256:<64 hex>, the RFC 6962 root of the writer's tree over positions 0..seq."
    )
    time: str = Field(description="When it was signed, RFC 3339 UTC with microseconds.")
    key_id: str = Field(description="The signing key's id (GET /audit/keys).")
    void: dict[str, str] = Field(
        description="Every position up to `seq` assigned but not stored (seq -> sha256 digest "
        "of the lost record), so a verifier continues the chain and the tree past them."
    )
    note: str = Field(
        description="The C2SP signed note: tlog-checkpoint `<origin>/writer/<writer>`, count, "
        "base64 root, signed by the same key under the key name `<origin>` (RG_AUDIT_LOG_ORIGIN)."
    )
    signature: str = Field(description="base64url (no padding) of the 64-byte signature.")

    model_config = {"json_schema_extra": {"examples": [EXAMPLE_CHECKPOINT]}}


class PublicKeyEntry(BaseModel):
    """One public key that checkpoints verify with."""

    key_id: str = Field(examples=["3f9a0c1b2d4e5f60"])
    algorithm: Literal["ed25519"] = "ed25519"
    public_key_pem: str = Field(
        examples=["-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA...\n-----END PUBLIC KEY-----\n"]
    )
    current: bool = Field(description="True for the key this writer signs with now.")
    verifier_key: str = Field(
        description="The key in C2SP note verifier-key form, `<origin>+<8 hex key id>+<base64>` "
        "under the key name RG_AUDIT_LOG_ORIGIN: what opens the checkpoints' notes.",
        examples=["ractogateway-kafka/ractogateway.audit+1a2b3c4d+AQID..."],
    )


class PublicKeys(BaseModel):
    """The current key (when signing) first, then the retired ones."""

    keys: list[PublicKeyEntry]


@router.get(
    "/audit/checkpoint",
    summary="The latest signed checkpoint of this writer's chain, or of a log (C2SP note)",
    response_model=SignedCheckpoint,
    responses={
        200: {
            "content": {"text/plain": {"example": _NOTE_EXAMPLE}},
            "description": "Without `log`: this writer's latest checkpoint (JSON). With `log`: "
            "the latest C2SP checkpoint note of that log, `text/plain`.",
        },
        404: {
            "model": ErrorBody,
            "description": "No checkpoint written yet (`no_checkpoint`), or no signing key is "
            "configured (`unsigned`).",
        },
        **error_responses(422),
    },
)
async def latest_checkpoint(
    services: ServicesDep,
    log: Annotated[
        str | None,
        Query(
            description="`writers` (the log of writers) or a writer id (32 hex): that log's "
            "latest signed checkpoint note, text/plain.",
            pattern="^(writers|[0-9a-f]{32})$",
        ),
    ] = None,
) -> Any:
    """The latest checkpoint this writer wrote to the checkpoints topic (JSON), for a witness to
    keep; with `log`, the latest signed note of the log of writers or of one writer's log (from
    the topics, any replica's); no API key needed."""
    if log is None:
        return SignedCheckpoint.model_validate(services.checkpoints.latest().as_json())
    if log != "writers" and not _WRITER.fullmatch(log):
        raise InvalidRequestError("log is `writers` or a writer id (32 lowercase hex digits)")
    proofs = services.proofs
    if services.settings.audit_signing_key_file is None:
        raise UnsignedError(
            "checkpoints are not signed: no signing key is configured (RG_AUDIT_SIGNING_KEY_FILE)"
        )
    if proofs is None:
        raise NoCheckpointError(
            "this instance reads no log (RG_AUDIT_PROOFS=false): ask another replica"
        )
    if log == "writers":
        note = None if proofs.writers_note is None else proofs.writers_note.note
        if note is not None and services.cosigner is not None:
            note = cosigned_note(note, services.cosigner)
    else:
        latest = proofs.index.latest(log)
        note = None if latest is None else latest.note.decode()
    if note is None:
        raise NoCheckpointError(f"no signed checkpoint of log {log!r} read yet")
    return Response(note, media_type="text/plain; charset=utf-8")


@router.get("/audit/keys", summary="The public keys checkpoints verify with")
async def public_keys(services: ServicesDep) -> PublicKeys:
    """The service's own public key (`current`) and the retired ones of
    RG_AUDIT_RETIRED_KEYS_DIR; no API key needed."""
    origin = services.settings.log_origin
    return PublicKeys(
        keys=[
            PublicKeyEntry(
                key_id=key.key_id,
                public_key_pem=key.pem,
                current=key.current,
                verifier_key=verifier_key(origin, key.key),
            )
            for key in services.checkpoints.public_keys
        ]
    )


def cosigned_note(note: str, cosigner: Cosigner) -> str:
    """`note` with the witnesses' cosignature lines kept for its checkpoint appended."""
    head = TreeHead.parse(parse_note(note.encode()).text)
    return with_cosignatures(note, cosigner.cosignatures(head))
