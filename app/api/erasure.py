"""POST /audit/erase and GET /audit/erase/{id}: crypto-shredding one subject's data
(RG_ERASURE=on; scope `audit:erase`, which no other scope implies). See docs/privacy.md."""

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from app.api.auth import require
from app.api.deps import AcceptingWork, ServicesDep
from app.api.errors import ErrorBody, error_responses
from app.errors import InvalidRequestError
from app.ingest.erasures import Erasures
from app.ingest.receipts import AuditReceipt
from app.services import Services

router = APIRouter(
    tags=["erasure"],
    dependencies=[require("audit:erase"), AcceptingWork],
    responses=error_responses(401, 403),
)


class ErasureRequest(BaseModel):
    """Whose data to erase, and why (stored on the trail as given: name no person in it)."""

    subject: str = Field(min_length=1, max_length=1024)
    reason: str = Field(min_length=1, max_length=1024)


class ErasureStatus(BaseModel):
    """Where an erasure stands. `gone_from_segments`: no record of its keys with a value is
    left in the keys topic's segments (read from offset 0: what compaction left)."""

    erasure_id: str
    subject_hash: str
    kids: list[str]
    tombstoned: bool = True
    gone_from_segments: bool


def _erasures(services: Services) -> Erasures:
    if services.erasures is None:
        raise InvalidRequestError("erasure is off: RG_ERASURE=on turns it on")
    return services.erasures


_UNKNOWN = {
    "model": ErrorBody,
    "description": "No key of that subject (`unknown_subject`), or no erasure of that id "
    "(`unknown_erasure`).",
}
_UNAVAILABLE = {
    "model": ErrorBody,
    "description": "Kafka or the erasure keys topic cannot be used now; see `Retry-After`.",
}


@router.post(
    "/audit/erase",
    status_code=202,
    response_model=AuditReceipt,
    summary="Erase one subject: destroy its key, append an erasure record",
    responses={**error_responses(422), 404: _UNKNOWN, 503: _UNAVAILABLE},
)
async def erase(body: ErasureRequest, services: ServicesDep) -> AuditReceipt:
    """Writes the erasure record (acks=all), tombstones the subject's keys and purges it from
    GET /messages; answers with the erasure record's receipt. Its progress: GET
    /audit/erase/{event_id}."""
    return await _erasures(services).erase(body.subject, body.reason)


@router.get(
    "/audit/erase/{erasure_id}",
    response_model=ErasureStatus,
    summary="Whether an erasure's keys are gone from the keys topic's segments",
    responses={**error_responses(422), 404: _UNKNOWN, 503: _UNAVAILABLE},
)
async def erase_status(
    erasure_id: Annotated[str, Path(min_length=1, max_length=128)], services: ServicesDep
) -> ErasureStatus:
    """The erasure record's keys, and whether compaction has removed them."""
    progress = await _erasures(services).progress(erasure_id)
    return ErasureStatus(
        erasure_id=progress.erasure_id,
        subject_hash=progress.subject_hash,
        kids=progress.kids,
        gone_from_segments=progress.gone_from_segments,
    )
