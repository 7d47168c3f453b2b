"""GET /audit/proof and GET /audit/consistency: proofs an auditor checks without the trail.

An inclusion proof is a C2SP tlog-proof (c2sp.org/tlog-proof): the record's index in its
writer's tree, the proof's hashes, and the writer's latest signed checkpoint note covering it;
its `extra` line is the position's leaf entry (`rg-leaf-v1`, writer, seq, the record's digest),
so the proof says which record it proves. A consistency proof is the hashes, base64 one a
line, that show a writer's tree of `old` entries is a prefix of its tree of `new` entries (RFC
6962 §2.1.4). No API key is needed, as for the checkpoints: a proof holds only hashes and what
the receipt already says. Proofs come from the proof index (app/recent/proofs.py), which reads
the topics from their beginning: any record the audit topic still holds, of any writer.
"""

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.api.deps import ServicesDep
from app.api.errors import ErrorBody, error_responses
from app.errors import InvalidRequestError, NoProofError, UnsignedError
from app.integrity.proofs import ProofIndex, ProofUnavailableError
from app.services import Services

router = APIRouter(tags=["integrity"])

WRITER_PATTERN = "^[0-9a-f]{32}$"
_PROOF_EXAMPLE = (
    "c2sp.org/tlog-proof@v1\n"
    "extra cmctbGVhZi12MQo0ZjFjMGE5ZTJiN2Q0YzNhOGU2ZjVkMWIwYzlhOGU3Zgo1Cg==\n"
    "index 5\n"
    "PDbWi3Lyh0n7ByUl3ZkCrjwyTUMnRLHxyNQ2yuZNNQc=\n"
    "\n"
    "ractogateway-kafka/ractogateway.audit/4f1c0a9e2b7d4c3a8e6f5d1b0c9a8e7f\n"
    "42\n"
    "yCu5q/FBo4j66959CUc9fEftoy0FUy9gtCLP6DO78pA=\n"
    "\n"
    "\u2014 ractogateway-kafka/ractogateway.audit P82iDH7C...\n"
)
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorBody,
        "description": "No proof (`no_proof`: not indexed yet, not covered by a checkpoint "
        "yet, or the writer's records disagree with its checkpoint), or no signing key is "
        "configured (`unsigned`).",
    }
}


def _index(services: Services) -> ProofIndex:
    if services.settings.audit_signing_key_file is None:
        raise UnsignedError(
            "proofs need signed checkpoints: no signing key is configured "
            "(RG_AUDIT_SIGNING_KEY_FILE)"
        )
    if services.proofs is None:
        raise ProofUnavailableError(
            "this instance keeps no proof index (RG_AUDIT_PROOFS=false): ask another replica"
        )
    return services.proofs.index


@router.get(
    "/audit/proof",
    summary="An inclusion proof of one audit record (C2SP tlog-proof)",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"example": _PROOF_EXAMPLE}},
            "description": "The tlog-proof: `c2sp.org/tlog-proof@v1`, `extra` (base64 of the "
            "leaf entry), `index`, the hashes, a blank line, the signed checkpoint note.",
        },
        **_NOT_FOUND,
        **error_responses(422),
    },
)
async def inclusion_proof(
    services: ServicesDep,
    event_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    writer: Annotated[str | None, Query(pattern=WRITER_PATTERN)] = None,
    seq: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """The proof of the record `event_id`, or of position `seq` of `writer` (as the receipt
    names them); available once a checkpoint covers the record (RG_AUDIT_CHECKPOINT_S)."""
    by_position = writer is not None or seq is not None
    if (event_id is not None) == by_position or (by_position and (writer is None or seq is None)):
        raise InvalidRequestError("name the record by event_id, or by writer and seq")
    try:
        index = _index(services)
        if event_id is not None:
            writer, seq = index.locate(event_id)
        proof = index.proof(writer or "", seq or 0)
    except ProofUnavailableError as exc:
        raise NoProofError(str(exc)) from None
    return Response(
        proof.encode(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{writer}-{seq}.tlog-proof"'},
    )


@router.get(
    "/audit/consistency",
    summary="A consistency proof between two sizes of a writer's tree, or of the log of "
    "writers' (RFC 6962)",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/plain": {"example": "PDbWi3Lyh0n7ByUl3ZkCrjwyTUMnRLHxyNQ2yuZNNQc=\n"}
            },
            "description": "The proof's hashes, base64, one a line (none when old is 0 or "
            "equals new).",
        },
        **_NOT_FOUND,
        **error_responses(422),
    },
)
async def consistency_proof(
    services: ServicesDep,
    old: Annotated[int, Query(ge=0)],
    new: Annotated[int, Query(ge=0)],
    writer: Annotated[str | None, Query(pattern=WRITER_PATTERN)] = None,
    log: Annotated[
        Literal["writers"] | None,
        Query(description="`writers`: the log of writers instead of a writer's log."),
    ] = None,
) -> Response:
    """The proof that `writer`'s tree (or, with `log=writers`, the log of writers' tree) of
    `old` entries is a prefix of its tree of `new` entries; both at most the size of its latest
    signed checkpoint the index holds."""
    if (writer is None) == (log is None):
        raise InvalidRequestError("name the log by writer, or by log=writers")
    if old > new:
        raise InvalidRequestError(f"old ({old}) is larger than new ({new})")
    index = _index(services)
    if log is not None:
        hashes = _writers_consistency(services, old, new)
    else:
        try:
            hashes = index.consistency(writer or "", old, new)
        except ProofUnavailableError as exc:
            raise NoProofError(str(exc)) from None
    body = "".join(base64.b64encode(h).decode() + "\n" for h in hashes)
    return Response(body, media_type="text/plain; charset=utf-8")


def _writers_consistency(services: Services, old: int, new: int) -> list[bytes]:
    reader = services.proofs
    note = None if reader is None else reader.writers_note
    if reader is None or note is None:
        raise NoProofError("no signed checkpoint of the log of writers yet")
    if new > note.size:
        raise NoProofError(
            f"the latest signed checkpoint of the log of writers has size {note.size}, not {new}"
        )
    return reader.writers_tree.consistency(old, new)
