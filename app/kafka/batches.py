"""What a batch becomes: calling the handler, the records its result asks for (or the dead
letters of a batch it failed on), and publishing them, acknowledged before anything is
committed. The loop around it (polling, committing, transactions) is `app/kafka/stream.py`."""

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from app.kafka.config import KafkaStreamConfig
from app.kafka.consumer import next_offsets
from app.kafka.errors import KafkaTimeoutError
from app.kafka.models import KafkaMessage, KafkaProduceResult, KafkaPublishRequest
from app.kafka.producer import KafkaProducerClient, ProduceOptions

HandlerResult = Sequence[Any] | None
Handler = Callable[[list[KafkaMessage]], HandlerResult | Awaitable[HandlerResult]]

DLQ_ERROR = "rg-dlq-error"
DLQ_SOURCE = "rg-dlq-source"


async def call_handler(handler: Handler, batch: list[KafkaMessage]) -> Any:
    """The handler's result for `batch`, sync or async."""
    result = handler(batch)
    if inspect.isawaitable(result):
        return await result
    return result


def plan_outputs(result: Any, output_topic: str | None) -> list[KafkaPublishRequest]:
    """The records a handler's result asks for (TypeError for a result that is none of the
    accepted forms)."""
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
    return requests


async def publish_outputs(
    requests: list[KafkaPublishRequest], producer: KafkaProducerClient, config: KafkaStreamConfig
) -> list[KafkaProduceResult]:
    """Send `requests` together and wait for every acknowledgement (`publish_timeout_s`);
    the first failure is raised. Without commits or waiting asked for, fire and forget."""
    if not requests:
        return []
    if not config.wait_for_publish and not config.commit_on_success:
        # Nothing depends on the acknowledgements: the producer logs and counts failures.
        for r in requests:
            await producer.publish(r.topic, r.value, **placement(r), wait=False)
        return []
    # Sent together (aiokafka batches them), acknowledged before the caller commits.
    receipts = [await producer.send(r.topic, r.value, **placement(r)) for r in requests]
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*receipts, return_exceptions=True), config.publish_timeout_s
        )
    except TimeoutError:
        raise KafkaTimeoutError(
            f"{len(requests)} output(s) not acknowledged within "
            f"{config.publish_timeout_s}s; offsets not committed"
        ) from None
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [o for o in outcomes if isinstance(o, KafkaProduceResult)]


def placement(request: KafkaPublishRequest) -> ProduceOptions:
    """A request's record options, as `send()` and `publish()` take them."""
    return ProduceOptions(
        key=request.key,
        headers=request.headers,
        partition=request.partition,
        timestamp_ms=request.timestamp_ms,
    )


def places(batch: list[KafkaMessage]) -> str:
    """Where a batch ends, per partition, for messages: `topic[partition]@next offset`."""
    return ", ".join(f"{topic}[{part}]@{off}" for (topic, part), off in next_offsets(batch).items())


def dead_letters(
    batch: list[KafkaMessage], error: BaseException, topic: str
) -> list[KafkaPublishRequest]:
    """The batch's records for the dead-letter `topic`, with the error and their origin."""
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
