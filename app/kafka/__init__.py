"""The typed async Kafka library the service stands on (aiokafka underneath, no HTTP here).

Names and semantics follow the reference `ractogateway.kafka` API; see each class's docstring
for where ours differs and why.
"""

from app.kafka.audit import AuditLogResult, AuditRecord, KafkaAuditLogger
from app.kafka.config import KafkaConsumerConfig, KafkaProducerConfig, KafkaStreamConfig
from app.kafka.consumer import KafkaConsumerClient
from app.kafka.delivery import Delivery, DeliveryFailure, ProducerStats, outcome_of
from app.kafka.errors import (
    KafkaBrokerError,
    KafkaClientError,
    KafkaCommitError,
    KafkaConfigError,
    KafkaConnectionError,
    KafkaFencedError,
    KafkaHandlerError,
    KafkaNoGroupError,
    KafkaNotStartedError,
    KafkaRebalancedError,
    KafkaRecordTooLargeError,
    KafkaSerializationError,
    KafkaTimeoutError,
    KafkaUnknownPartitionError,
)
from app.kafka.models import (
    KafkaAuditEvent,
    KafkaMessage,
    KafkaProduceResult,
    KafkaPublishRequest,
)
from app.kafka.producer import KafkaProducerClient, ProduceOptions
from app.kafka.registry import (
    RegisteredSchema,
    SchemaIncompatibleError,
    SchemaRefusedError,
    SchemaRegistryClient,
    SchemaRegistryConfig,
    SchemaRegistryError,
    SchemaRegistryUnavailableError,
)
from app.kafka.schemas import (
    JsonSchemaDeserializer,
    JsonSchemaSerializer,
    SchemaContract,
    SchemaViolationError,
    Violation,
)
from app.kafka.stream import KafkaStreamProcessor

__all__ = [
    "AuditLogResult",
    "AuditRecord",
    "Delivery",
    "DeliveryFailure",
    "JsonSchemaDeserializer",
    "JsonSchemaSerializer",
    "KafkaAuditEvent",
    "KafkaAuditLogger",
    "KafkaBrokerError",
    "KafkaClientError",
    "KafkaCommitError",
    "KafkaConfigError",
    "KafkaConnectionError",
    "KafkaConsumerClient",
    "KafkaConsumerConfig",
    "KafkaFencedError",
    "KafkaHandlerError",
    "KafkaMessage",
    "KafkaNoGroupError",
    "KafkaNotStartedError",
    "KafkaProduceResult",
    "KafkaProducerClient",
    "KafkaProducerConfig",
    "KafkaPublishRequest",
    "KafkaRebalancedError",
    "KafkaRecordTooLargeError",
    "KafkaSerializationError",
    "KafkaStreamConfig",
    "KafkaStreamProcessor",
    "KafkaTimeoutError",
    "KafkaUnknownPartitionError",
    "ProduceOptions",
    "ProducerStats",
    "RegisteredSchema",
    "SchemaContract",
    "SchemaIncompatibleError",
    "SchemaRefusedError",
    "SchemaRegistryClient",
    "SchemaRegistryConfig",
    "SchemaRegistryError",
    "SchemaRegistryUnavailableError",
    "SchemaViolationError",
    "Violation",
    "outcome_of",
]
