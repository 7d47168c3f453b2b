"""Ordinary events from `POST /publish` to the topics the service may write."""

from typing import Literal

from pydantic import BaseModel, Field

from app.backpressure import Backpressure
from app.kafka import KafkaClientError, KafkaProducerClient, KafkaPublishRequest
from app.metrics import ServiceMetrics
from app.topics import TopicPolicy


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
        self, request: KafkaPublishRequest, *, wait: bool, headers: dict[str, str] | None = None
    ) -> PublishReceipt:
        """Produce one record; raises `TopicNotAllowedError`, `OverloadedError` or the
        library's errors."""
        self._policy.check(request.topic)
        self._backpressure.admit()
        settled = self._metrics.track_produce("publish")
        try:
            result = await self._producer.publish(
                request.topic,
                request.value,
                key=request.key,
                # The caller's headers win over the carried trace context.
                headers={**(headers or {}), **(request.headers or {})},
                partition=request.partition,
                timestamp_ms=request.timestamp_ms,
                wait=wait,
                timeout_s=self._timeout_s,
                on_delivery=None if wait else settled,
            )
        except KafkaClientError as error:
            settled(None, error)
            raise
        if result is None:
            return PublishReceipt(
                topic=request.topic, partition=None, offset=None, timestamp_ms=None, status="queued"
            )
        settled(result, None)
        return PublishReceipt(**result.model_dump(), status="acked")
