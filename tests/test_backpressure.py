"""The in-flight bound (unit: a producer that is never started; only its counters move)."""

import pytest

from app.backpressure import Backpressure, OverloadedError
from app.kafka import KafkaProducerClient


def test_unit_records_are_admitted_below_the_bound_and_refused_at_it() -> None:
    producer = KafkaProducerClient()
    backpressure = Backpressure(producer, max_in_flight=2)
    backpressure.admit()
    producer.stats.sent = 2
    with pytest.raises(OverloadedError, match="2 records are waiting"):
        backpressure.admit()
    producer.stats.delivered = 1
    backpressure.admit()
