"""The producer's partitioner: aiokafka's default rule, each key's hash kept."""

import random
import uuid

from aiokafka.partitioner import DefaultPartitioner

from app.kafka import KafkaProducerConfig
from app.kafka.partitioner import MAX_KEYS, KeyHashPartitioner


def test_unit_keyed_records_go_where_the_default_partitioner_puts_them() -> None:
    ours, default = KeyHashPartitioner(), DefaultPartitioner()
    rng = random.Random(7)
    keys = [uuid.UUID(int=rng.getrandbits(128)).hex.encode() for _ in range(500)]
    keys += [rng.randbytes(rng.randrange(0, 40)) for _ in range(500)] + [b"", b"bench-user-42"]
    for count in (1, 2, 3, 7, 12, 64):
        partitions = list(range(count))
        for key in keys * 2:  # the second time from the kept hash
            assert ours(key, partitions, partitions) == default(key, partitions, partitions)


def test_unit_the_choice_follows_the_partitions_given_not_the_first_call() -> None:
    # Partitions added to a topic: the same key's next record goes where the rule now says.
    ours, default = KeyHashPartitioner(), DefaultPartitioner()
    key = b"user-7f3a"
    assert ours(key, [0, 1], [0, 1]) == default(key, [0, 1], [0, 1])
    grown = list(range(9))
    assert ours(key, grown, grown) == default(key, grown, grown)
    # Unavailable partitions do not move a keyed record (the Java client's rule).
    assert ours(key, grown, [0]) == default(key, grown, grown)


def test_unit_keyless_records_go_to_an_available_partition() -> None:
    ours = KeyHashPartitioner()
    assert {ours(None, [0, 1, 2, 3], [2, 3]) for _ in range(200)} == {2, 3}
    assert {ours(None, [0, 1], []) for _ in range(200)} == {0, 1}


def test_unit_the_kept_hashes_are_bounded() -> None:
    ours = KeyHashPartitioner()
    for n in range(MAX_KEYS * 2 + 5):
        ours(n.to_bytes(4, "big"), [0, 1, 2], [0, 1, 2])
    assert len(ours._hashes) <= MAX_KEYS


def test_unit_the_producer_is_given_it_unless_extra_names_another() -> None:
    assert isinstance(KafkaProducerConfig().to_aiokafka()["partitioner"], KeyHashPartitioner)
    theirs = DefaultPartitioner()
    kwargs = KafkaProducerConfig(extra={"partitioner": theirs}).to_aiokafka()
    assert kwargs["partitioner"] is theirs
