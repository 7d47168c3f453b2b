"""GET /ui: the inspection page (docs/ui.md), its two static assets, and GET /ui/status.

The page is three committed files in app/api/static/ (HTML, one JavaScript module, CSS): no
build step, nothing fetched from elsewhere, so it works on an offline cluster. Loading them
needs no key; the page then calls the JSON API (GET /messages and /messages/stream, scope
`messages:read`) with the key it asks for, as `Authorization: Bearer`. The page and its assets
are left out of the OpenAPI document (they are not an API); GET /ui/status is in it.

Every answer of the page carries a strict Content-Security-Policy: scripts only from the
service itself and no inline script, no plugins, no framing, connections only back to the
service. Record text is put in the page as text (`textContent`), never as markup; the policy
is the second line of defence should that ever slip.

GET /ui/status gives what the page's header strip shows that no other endpoint gives as JSON:
the spool's depth and oldest record, what is in flight, and records/s over the last minutes
(`app.rates.RateHistory`). Readiness and the latest signed checkpoint the page reads from GET
/readyz and GET /audit/checkpoint themselves.
"""

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from app.api.deps import ServicesDep
from app.services import Services

router = APIRouter(tags=["ui"])

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Small files: always revalidated, so a new version of the service shows its own page.
    "Cache-Control": "no-cache",
}
# name served under /ui/ -> media type
ASSETS = {
    "ui.js": "text/javascript; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
}


@cache
def asset(name: str) -> bytes:
    """A file of app/api/static/, read once (it is part of the installed package)."""
    return resources.files("app.api").joinpath("static", name).read_bytes()


def _file(name: str, media_type: str) -> Response:
    return Response(asset(name), media_type=media_type, headers=_HEADERS)


class SpoolState(BaseModel):
    """The disk spool (RG_SPOOL_DIR): records waiting for Kafka there."""

    enabled: bool = Field(description="False without RG_SPOOL_DIR (the other fields are 0).")
    depth: int = Field(description="Records in the spool.", examples=[0])
    bytes: int = Field(description="Bytes of those records.", examples=[0])
    oldest_age_s: float = Field(description="Age of the oldest, 0 when empty.", examples=[0.0])


class InFlightState(BaseModel):
    """Records handed to the producer and not yet acknowledged, and the bytes requests hold."""

    records: int = Field(examples=[3])
    max_records: int = Field(description="RG_MAX_IN_FLIGHT.", examples=[10000])
    bytes: int = Field(examples=[4096])
    max_bytes: int = Field(description="RG_MAX_IN_FLIGHT_BYTES.", examples=[67108864])


class RateState(BaseModel):
    """Records Kafka acknowledged per second, one value per interval, oldest first."""

    interval_s: float = Field(examples=[5.0])
    records_per_s: list[float] = Field(examples=[[0.0, 12.4, 30.2]])
    total: int = Field(description="Records acknowledged since the start.", examples=[1234])


class ChainState(BaseModel):
    """This process's hash chain: its writer id and the last position assigned."""

    writer: str = Field(examples=["0123456789abcdef0123456789abcdef"])
    seq: int = Field(description="-1 before the first record.", examples=[41])


class MessagesState(BaseModel):
    """The GET /messages consumer: whether it follows its topics now."""

    following: bool = Field(
        description="False while it reconnects to Kafka: GET /messages, /messages/stream and "
        "the page's table then show nothing newer than when it lost the connection.",
        examples=[True],
    )


class WitnessState(BaseModel):
    """One witness of RG_AUDIT_WITNESSES, as this replica knows it (the same as its metrics)."""

    name: str = Field(description="The witness's key name.", examples=["witness.example/w1"])
    cosigned_size: int = Field(
        description="Size of the latest checkpoint of the log of writers it cosigned.",
        examples=[42],
    )
    age_s: float = Field(
        description="How long the oldest checkpoint it has not cosigned has waited; 0 when it "
        "cosigned the latest.",
        examples=[0.0],
    )
    alarm: str | None = Field(
        default=None, description="Why it refused our latest checkpoint sent to it, if it did."
    )


class UiStatus(BaseModel):
    """What the /ui page's header strip shows besides /readyz and /audit/checkpoint."""

    spool: SpoolState
    in_flight: InFlightState
    rate: RateState
    chain: ChainState
    messages: MessagesState
    topics: list[str] = Field(description="The topics GET /messages keeps (RG_MESSAGES_TOPICS).")
    witnesses: list[WitnessState] = Field(
        default_factory=list,
        description="The witnesses of the log of writers (RG_AUDIT_WITNESSES); empty without.",
    )


def status_of(services: Services) -> UiStatus:
    """The header strip's figures, as they are now."""
    spool = services.spool
    stats = services.producer.stats
    return UiStatus(
        spool=SpoolState(
            enabled=spool is not None,
            depth=spool.depth if spool is not None else 0,
            bytes=spool.size_bytes if spool is not None else 0,
            oldest_age_s=round(spool.oldest_age_s(), 3) if spool is not None else 0.0,
        ),
        in_flight=InFlightState(
            records=stats.pending,
            max_records=services.settings.max_in_flight,
            bytes=services.in_flight.held,
            max_bytes=services.in_flight.max_bytes,
        ),
        rate=RateState(
            interval_s=services.rates.interval_s,
            records_per_s=[round(rate, 3) for rate in services.rates.rates()],
            total=stats.delivered,
        ),
        chain=ChainState(writer=services.chain.writer_id, seq=services.chain.count - 1),
        messages=MessagesState(following=services.reader.connected.is_set()),
        topics=services.recent.topics,
        witnesses=_witnesses(services),
    )


def _witnesses(services: Services) -> list[WitnessState]:
    cosigner = services.cosigner
    if cosigner is None:
        return []
    status = cosigner.status()
    return [
        WitnessState(
            name=w.name,
            cosigned_size=int(status[w.name]["cosigned_size"]),
            age_s=round(status[w.name]["age_seconds"], 3),
            alarm=w.alarm,
        )
        for w in cosigner.witnesses
    ]


@router.get("/ui", include_in_schema=False)
async def ui_page() -> Response:
    """The page; it asks for an API key (scope `messages:read`) when the API answers 401."""
    return _file("ui.html", "text/html; charset=utf-8")


@router.get("/ui/ui.js", include_in_schema=False)
async def ui_script() -> Response:
    """The page's one script (a module)."""
    return _file("ui.js", ASSETS["ui.js"])


@router.get("/ui/ui.css", include_in_schema=False)
async def ui_style() -> Response:
    """The page's style sheet (light and dark)."""
    return _file("ui.css", ASSETS["ui.css"])


@router.get("/ui/status", summary="The /ui page's operator figures")
async def ui_status(services: ServicesDep) -> UiStatus:
    """The disk spool's depth and oldest record, records in flight, records/s Kafka
    acknowledged over the last ten minutes (5-second intervals, from the service's own
    counter) and this writer's chain position. No key needed, like GET /metrics: the same
    figures are there."""
    return status_of(services)
