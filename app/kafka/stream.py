"""`KafkaStreamProcessor`: consume a batch, transform it, publish the outputs, commit.

At-least-once: outputs are acknowledged before the batch's offsets are committed, so a crash
reprocesses a batch and never skips one. A failing batch goes to the dead-letter topic when one
is configured (and processing continues); otherwise the error propagates, nothing committed.
"""

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from app.kafka.config import KafkaStreamConfig
from app.kafka.consumer import KafkaConsumerClient, next_offsets
from app.kafka.errors import KafkaConfigError, KafkaHandlerError, KafkaTimeoutError
from app.kafka.models import KafkaMessage, KafkaProduceResult, KafkaPublishRequest
from app.kafka.producer import KafkaProducerClient

logger = logging.getLogger(__name__)

HandlerResult = Sequence[Any] | None
Handler = Callable[[list[KafkaMessage]], HandlerResult | Awaitable[HandlerResult]]

DLQ_ERROR = "rg-dlq-error"
DLQ_SOURCE = "rg-dlq-source"


class KafkaStreamProcessor:
    """Batched consume → transform → publish → commit loop.

    The handler takes the batch (a list of `KafkaMessage`) and returns, sync or async:
    - None: consume only;
    - a sequence of `KafkaPublishRequest`: each published as it says;
    - a sequence of other values: each published as a value to `output_topic`.
    """

    def __init__(
        self,
        *,
        consumer: KafkaConsumerClient,
        producer: KafkaProducerClient | None = None,
        config: KafkaStreamConfig | None = None,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.config = config or KafkaStreamConfig()
        if self.config.commit_on_success and consumer.config.group_id is None:
            raise KafkaConfigError(
                "commit_on_success needs a consumer group: set the consumer's group_id "
                "(or commit_on_success=False)"
            )
        if self.config.dead_letter_topic is not None and producer is None:
            raise KafkaConfigError("a dead_letter_topic needs a producer to write to it")
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask `run()` to return after the batch in progress is published and committed."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called."""
        return self._stopping.is_set()

    async def collect_batch(self) -> list[KafkaMessage]:
        """Poll until `batch_size` records arrived or `max_wait_ms` passed (or `stop()`)."""
        batch: list[KafkaMessage] = []
        deadline = time.monotonic() + self.config.max_wait_ms / 1000
        while len(batch) < self.config.batch_size and not self.stopping:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 and batch:
                break
            batch += await self.consumer.poll(
                timeout_ms=max(0, min(self.config.poll_timeout_ms, remaining_ms)),
                max_records=self.config.batch_size - len(batch),
            )
            if remaining_ms <= 0:
                break
        return batch

    async def process_once(self, handler: Handler, *, output_topic: str | None = None) -> int:
        """Run one batch cycle; return how many records were consumed."""
        batch = await self.collect_batch()
        if not batch:
            return 0
        try:
            requests = self._plan(await _call(handler, batch), output_topic)
        except Exception as exc:
            if self.config.dead_letter_topic is None:
                raise KafkaHandlerError(
                    f"handler failed on a batch of {len(batch)} from "
                    f"{_places(batch)}: {type(exc).__name__}: {exc}"
                ) from exc
            logger.warning(
                "handler failed on %d record(s) from %s (%s); sending them to %r",
                len(batch),
                _places(batch),
                exc,
                self.config.dead_letter_topic,
            )
            requests = _dead_letters(batch, exc, self.config.dead_letter_topic)
        await self._publish(requests)
        if self.config.commit_on_success:
            await self.consumer.commit(next_offsets(batch))
        return len(batch)

    async def run(
        self,
        handler: Handler,
        *,
        output_topic: str | None = None,
        iterations: int | None = None,
    ) -> int:
        """Run batch cycles until `stop()` (or `iterations` cycles); return records consumed."""
        total = 0
        cycles = 0
        while not self.stopping and (iterations is None or cycles < iterations):
            total += await self.process_once(handler, output_topic=output_topic)
            cycles += 1
        return total

    def _plan(self, result: Any, output_topic: str | None) -> list[KafkaPublishRequest]:
        if result is None:
            return []
        if isinstance(result, str | bytes | Mapping) or not isinstance(result, Sequence):
            raise TypeError(
                "a handler returns None or a sequence (of KafkaPublishRequest or of values), "
                f"not {type(result).__name__}"
            )
        requests = []
        for item in result:
            if isinstance(item, KafkaPublishRequest):
                requests.append(item)
            elif output_topic is None:
                raise TypeError("the handler returned plain values but no output_topic was given")
            else:
                requests.append(KafkaPublishRequest(topic=output_topic, value=item))
        if requests and self.producer is None:
            raise KafkaConfigError("the handler returned outputs but the processor has no producer")
        return requests

    async def _publish(self, requests: list[KafkaPublishRequest]) -> list[KafkaProduceResult]:
        if not requests:
            return []
        assert self.producer is not None  # noqa: S101 - _plan and __init__ guarantee it
        producer = self.producer
        if not self.config.wait_for_publish and not self.config.commit_on_success:
            # Nothing depends on the acknowledgements: the producer logs and counts failures.
            for r in requests:
                await producer.publish(r.topic, r.value, **_placement(r), wait=False)
            return []
        # Sent together (aiokafka batches them), acknowledged before the caller commits.
        receipts = [await producer.send(r.topic, r.value, **_placement(r)) for r in requests]
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*receipts, return_exceptions=True), self.config.publish_timeout_s
            )
        except TimeoutError:
            raise KafkaTimeoutError(
                f"{len(requests)} output(s) not acknowledged within "
                f"{self.config.publish_timeout_s}s; offsets not committed"
            ) from None
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [o for o in outcomes if isinstance(o, KafkaProduceResult)]


def _placement(request: KafkaPublishRequest) -> dict[str, Any]:
    """A request's record options, as `send()` and `publish()` take them."""
    return {
        "key": request.key,
        "headers": request.headers,
        "partition": request.partition,
        "timestamp_ms": request.timestamp_ms,
    }


async def _call(handler: Handler, batch: list[KafkaMessage]) -> Any:
    result = handler(batch)
    if inspect.isawaitable(result):
        return await result
    return result


def _places(batch: list[KafkaMessage]) -> str:
    return ", ".join(f"{topic}[{part}]@{off}" for (topic, part), off in next_offsets(batch).items())


def _dead_letters(
    batch: list[KafkaMessage], error: BaseException, topic: str
) -> list[KafkaPublishRequest]:
    reason = f"{type(error).__name__}: {error}"[:1000]
    return [
        KafkaPublishRequest(
            topic=topic,
            key=message.key,
            value=message.value,
            headers={
                **message.headers,
                DLQ_ERROR: reason,
                DLQ_SOURCE: f"{message.topic}/{message.partition}/{message.offset}",
            },
        )
        for message in batch
    ]
