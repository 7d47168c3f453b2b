"""The audit receipt and the codec a trail keeps its receipts in for retries (unit, no
broker)."""

from app.ingest.receipts import AuditReceipt, receipt_codec
from app.kafka import KafkaProduceResult
from tests.helpers.ingest import a_receipt


def test_unit_audit_receipts_round_trip_through_the_trails_codec_packed_small() -> None:
    codec = receipt_codec()
    receipts = [
        a_receipt(),
        a_receipt(partition=None, offset=None, status="spooled", event_id="retry-é-1"),
        a_receipt(status="queued", topic="other.audit", seq=0, offset=0, partition=0),
    ]
    for receipt in receipts:
        stored = codec.pack(receipt)
        assert isinstance(stored, bytes)
        assert len(stored) < 200
        unpacked = codec.unpack(stored)
        assert unpacked == receipt
        assert unpacked.model_dump_json() == receipt.model_dump_json()


def test_unit_receipts_whose_names_overflow_the_codecs_table_are_kept_as_json() -> None:
    codec = receipt_codec()
    many = [a_receipt(topic=f"audit-{i}") for i in range(300)]
    stored = [codec.pack(receipt) for receipt in many]
    assert [codec.unpack(packed) for packed in stored] == many
    assert stored[0][:1] == b"P"
    assert stored[-1][:1] == b"J"


def test_unit_a_receipt_made_of_the_service_s_values_is_the_validated_one() -> None:
    validated = a_receipt(partition=None, offset=None, status="queued")
    made = AuditReceipt.made(**validated.model_dump())
    assert made == validated
    assert made.model_fields_set == validated.model_fields_set
    assert made.model_dump_json() == validated.model_dump_json()
    assert repr(made) == repr(validated)
    assert made.model_copy(update={"status": "acked"}).status == "acked"


def test_unit_a_queued_receipt_once_acked_has_kafkas_place_and_nothing_else_changed() -> None:
    queued = a_receipt(partition=None, offset=None, status="queued")
    acked = queued.acked(KafkaProduceResult(topic=queued.topic, partition=1, offset=77))
    assert acked == a_receipt(partition=1, offset=77, status="acked")
    assert queued.status == "queued"  # a new receipt, the queued one as it was
