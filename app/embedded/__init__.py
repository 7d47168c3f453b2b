"""The embedded Apache Kafka: a real broker for `make run` and the test suite, without Docker."""

from app.embedded.broker import EmbeddedKafka, find_java
from app.embedded.cluster import EmbeddedKafkaCluster
from app.embedded.distribution import KAFKA_VERSION, KafkaDistribution, default_cache_dir
from app.embedded.errors import EmbeddedKafkaError
from app.embedded.ports import free_port

__all__ = [
    "KAFKA_VERSION",
    "EmbeddedKafka",
    "EmbeddedKafkaCluster",
    "EmbeddedKafkaError",
    "KafkaDistribution",
    "default_cache_dir",
    "find_java",
    "free_port",
]
