"""Checks of the hash chain on records read back from Kafka (docs/integrity.md)."""

import hashlib

from app.integrity import GENESIS, link_of
from app.kafka import KafkaMessage


def chains_of(records: list[KafkaMessage]) -> dict[str, list[KafkaMessage]]:
    """The records by `rg-writer`, each writer's in `rg-seq` order."""
    writers: dict[str, list[KafkaMessage]] = {}
    for record in records:
        writer = record.header("rg-writer")
        assert writer is not None, record
        writers.setdefault(writer, []).append(record)
    for chain in writers.values():
        chain.sort(key=lambda record: int(record.header("rg-seq") or "-1"))
    return writers


def assert_unbroken(writer: str, chain: list[KafkaMessage]) -> None:
    """`chain` (one writer's records, by seq) holds seqs 0..n-1, each value matches its
    digest and each link recomputes from the one before."""
    prev = GENESIS
    for seq, record in enumerate(chain):
        assert isinstance(record.value, bytes)
        digest = hashlib.sha256(record.value).hexdigest()
        assert record.header("rg-digest") == f"sha256:{digest}"
        assert record.header("rg-seq") == str(seq), (seq, record.partition, record.offset)
        link = link_of(writer, seq, prev, digest)
        assert record.header("rg-chain") == f"sha256:{link}", (seq, record.offset)
        prev = link
