"""What the /ui page's header strip shows that no other endpoint gives as JSON: the spool's depth
and oldest record, what is in flight, and records/s over the last minutes (GET /ui/status).

Readiness and the latest signed checkpoint the page reads from GET /readyz and GET
/audit/checkpoint themselves. The rate comes from the service's own counter of records Kafka
acknowledged (the producer's `delivered`: audit records, spooled ones forwarded, and /publish):
`RateHistory` samples it every `interval_s` in a background task and keeps the last
`keep` intervals, so the chart has history from the start, not from when a page opened.
"""

import asyncio
import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from app.tasks import BackgroundTask

if TYPE_CHECKING:  # app.services builds a RateHistory: imported for the type only
    from app.services import Services

RATE_INTERVAL_S = 5.0
# Ten minutes of 5-second intervals.
RATE_KEEP = 120


class RateHistory:
    """Records/s of a monotonic counter per interval: `sample()` every `interval_s` (the
    background task, or a test calling it with its own clock), `rates()` oldest first."""

    def __init__(
        self,
        read: Callable[[], int],
        *,
        interval_s: float = RATE_INTERVAL_S,
        keep: int = RATE_KEEP,
    ) -> None:
        self._read = read
        self.interval_s = interval_s
        self._rates: collections.deque[float] = collections.deque(maxlen=keep)
        self._last: tuple[float, int] | None = None
        self._task = BackgroundTask("ui-rate-history", self._run)

    def sample(self, now: float | None = None) -> None:
        """Read the counter; the rate since the previous sample becomes the newest interval."""
        now = time.monotonic() if now is None else now
        count = self._read()
        if self._last is not None:
            then, before = self._last
            elapsed = now - then
            if elapsed > 0:
                # A counter that went back (a new producer) counts from zero again.
                self._rates.append(max(count - before, 0) / elapsed)
        self._last = (now, count)

    def rates(self) -> list[float]:
        """Records/s per interval, oldest first (at most `keep`)."""
        return list(self._rates)

    def start(self) -> None:
        """Sample every `interval_s` in the background."""
        self._task.start()

    async def close(self) -> None:
        """Stop sampling."""
        await self._task.close()

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)


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


class UiStatus(BaseModel):
    """What the /ui page's header strip shows besides /readyz and /audit/checkpoint."""

    spool: SpoolState
    in_flight: InFlightState
    rate: RateState
    chain: ChainState
    messages: MessagesState
    topics: list[str] = Field(description="The topics GET /messages keeps (RG_MESSAGES_TOPICS).")


def status_of(services: "Services") -> UiStatus:
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
    )
