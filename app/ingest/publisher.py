"""Ordinary events from `POST /publish` to the topics the service may write."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.errors import KafkaTooSlowError
from app.ingest.backpressure import Backpressure, Hold
from app.ingest.contracts import TopicContracts
from app.ingest.topic_policy import TopicPolicy
from app.kafka import (
    KafkaClientError,
    KafkaProducerClient,
    KafkaPublishRequest,
    KafkaTimeoutError,
)
from app.metrics import ServiceMetrics


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
        contracts: TopicContracts | None = None,
    ) -> None:
        self._backpressure = backpressure
        # With RG_SCHEMA_REGISTRY_URL: values checked against their topic's schema first.
        self._contracts = contracts
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
        """Produce one record; raises `TopicNotAllowedError`, `OverloadedError`, the schema
        contract's errors (`app.ingest.contracts`) or the library's errors. The record is made
        of its request's body: it takes over the bytes of `held` (the request's hold) until
        Kafka settles it."""
        self._policy.check(request.topic)
        value: Any = request.value
        schema_headers: dict[str, str] = {}
        if self._contracts is not None:
            value, schema_headers = await self._contracts.encode(request.topic, request.value)
        settled = self._metrics.track_produce("publish")
        try:
            # The record is made of its request's body: its size is the request's.
            delivery = await self._backpressure.hand_over(
                held.size if held is not None else 0,
                held,
                lambda: self._producer.queue(
                    request.topic,
                    value,
                    key=request.key,
                    # The caller's headers win over the carried trace context; the schema's
                    # (content-type, rg-schema-id) over both.
                    headers={**(headers or {}), **(request.headers or {}), **schema_headers},
                    partition=request.partition,
                    timestamp_ms=request.timestamp_ms,
                    timeout_s=self._timeout_s,
                ),
            )
        except KafkaTimeoutError as exc:
            settled(None, exc)
            raise _no_idempotency(exc) from exc
        except KafkaClientError as exc:
            settled(None, exc)
            raise
        delivery.add_done_callback(settled)
        if not wait:
            delivery.log_failure()  # the client learns nothing more of it
            return PublishReceipt(
                topic=request.topic, partition=None, offset=None, timestamp_ms=None, status="queued"
            )
        try:
            result = await delivery.wait()
        except KafkaTimeoutError as exc:
            if not delivery.done():
                # The client learns nothing more of it: a later failure goes to the log.
                delivery.log_failure()
            raise _no_idempotency(exc) from exc
        return PublishReceipt(**result.model_dump(), status="acked")


def _no_idempotency(error: KafkaTimeoutError) -> KafkaTooSlowError:
    # The audit routes' advice (retry with the same event_id) does not hold here: a publish
    # has no event id, so a retry is a second record.
    return KafkaTooSlowError(f"{error}; a retry may write it twice")
