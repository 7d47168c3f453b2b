"""Ordinary events from `POST /publish` to the topics the service may write."""

import asyncio
import logging
from typing import Literal

from pydantic import BaseModel, Field

from app.ingest.backpressure import Backpressure, Hold
from app.ingest.topic_policy import TopicPolicy
from app.kafka import (
    KafkaClientError,
    KafkaProducerClient,
    KafkaProduceResult,
    KafkaPublishRequest,
    KafkaTimeoutError,
)
from app.kafka.errors import translate
from app.kafka.producer import DeliveryCallback
from app.metrics import ServiceMetrics

logger = logging.getLogger(__name__)


class PublishReceipt(BaseModel):
    """A `KafkaProduceResult` plus `status`; partition and offset are null until acked."""

    topic: str = Field(examples=["events.orders"])
    partition: int | None = Field(examples=[2])
    offset: int | None = Field(examples=[981])
    timestamp_ms: int | None = Field(examples=[1790000000000])
    status: Literal["acked", "queued"]


class Publisher:
    """Checks the topic against the policy, then produces through the service's producer."""

    def __init__(
        self,
        producer: KafkaProducerClient,
        policy: TopicPolicy,
        metrics: ServiceMetrics,
        *,
        timeout_s: float,
        backpressure: Backpressure,
    ) -> None:
        self._backpressure = backpressure
        self._producer = producer
        self._policy = policy
        self._metrics = metrics
        self._timeout_s = timeout_s

    async def publish(
        self,
        request: KafkaPublishRequest,
        *,
        wait: bool,
        headers: dict[str, str] | None = None,
        held: Hold | None = None,
    ) -> PublishReceipt:
        """Produce one record; raises `TopicNotAllowedError`, `OverloadedError` or the
        library's errors. The record is made of its request's body: it takes over the bytes of
        `held` (the request's hold) until Kafka settles it."""
        self._policy.check(request.topic)
        hold = self._backpressure.admit(held.size if held is not None else 0, held=held)
        settled = self._metrics.track_produce("publish")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        try:
            # A timeout scope, not wait_for: send() runs in this task, so the record is counted
            # before any other request passes admit().
            async with asyncio.timeout(self._timeout_s):
                delivery = await self._producer.send(
                    request.topic,
                    request.value,
                    key=request.key,
                    # The caller's headers win over the carried trace context.
                    headers={**(headers or {}), **(request.headers or {})},
                    partition=request.partition,
                    timestamp_ms=request.timestamp_ms,
                )
        except BaseException as exc:
            hold.release()  # not handed over: the producer holds none of its bytes
            if isinstance(exc, TimeoutError):
                error = KafkaTimeoutError(
                    f"the producer could not queue a record to {request.topic!r} within "
                    f"{self._timeout_s}s (its buffer is full: is Kafka reachable?); nothing was "
                    "sent"
                )
                settled(None, error)
                raise error from None
            if isinstance(exc, KafkaClientError):
                settled(None, exc)
            raise
        # Counted until Kafka settles it, also when the client stops waiting before.
        delivery.add_done_callback(lambda _: hold.release())
        delivery.add_done_callback(lambda done: _report(request.topic, done, settled, log=not wait))
        if not wait:
            return PublishReceipt(
                topic=request.topic, partition=None, offset=None, timestamp_ms=None, status="queued"
            )
        try:
            # shield: giving up waiting must not cancel the delivery itself.
            result = await asyncio.wait_for(asyncio.shield(delivery), deadline - loop.time())
        except TimeoutError:
            # The client learns nothing more of it: a later failure goes to the log.
            delivery.add_done_callback(lambda done: _log_failure(request.topic, done))
            raise KafkaTimeoutError(
                f"no acknowledgement for a record to {request.topic!r} within "
                f"{self._timeout_s}s; it may still be delivered"
            ) from None
        return PublishReceipt(**result.model_dump(), status="acked")


def _outcome(
    delivery: "asyncio.Future[KafkaProduceResult]",
) -> tuple[KafkaProduceResult | None, KafkaClientError | None]:
    if delivery.cancelled():
        return None, KafkaClientError("delivery was cancelled")
    error = delivery.exception()
    if error is None:
        return delivery.result(), None
    return None, error if isinstance(error, KafkaClientError) else translate(error)


def _report(
    topic: str,
    delivery: "asyncio.Future[KafkaProduceResult]",
    settled: DeliveryCallback,
    *,
    log: bool,
) -> None:
    # Counted in the metrics once Kafka settled it, whatever the client saw.
    settled(*_outcome(delivery))
    if log:
        _log_failure(topic, delivery)


def _log_failure(topic: str, delivery: "asyncio.Future[KafkaProduceResult]") -> None:
    _, error = _outcome(delivery)
    if error is not None:
        logger.error("record to %r was not delivered: %s", topic, error)
