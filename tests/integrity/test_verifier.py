"""The verifier on trails built in memory from the spec: every kind of problem, where it is."""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.integrity.chain import GENESIS, link_of
from app.integrity.checkpoint import canonical_json
from app.integrity.keys import PublicKey, derived_key_id
from app.integrity.report import Report
from app.integrity.verifier import Verifier
from tests.helpers.integrity import (
    ORIGIN,
    ChainedWriter,
    Record,
    SigningKey,
    chain_headers,
    checkpoint_v2,
    edge_cases,
    keyed,
    receipt_of,
    sign_json,
    spec_link,
    spec_note,
    with_value,
)

TOPIC = "audit"


def placed(records: list[Record], partitions: int = 3) -> list[Record]:
    """Records as a producer would have placed them: round robin, offsets per partition."""
    next_offset = [0] * partitions
    out = []
    for i, record in enumerate(records):
        p = i % partitions
        out.append(replace(record, partition=p, offset=next_offset[p]))
        next_offset[p] += 1
    return out


def verify(
    records: list[Record],
    checkpoints: Sequence[dict[str, Any]] = (),
    keys: Sequence[SigningKey] = (),
    receipts: Sequence[dict[str, Any]] = (),
    *,
    reverse: bool = False,
) -> Report:
    public = {k.key_id: k.private.public_key() for k in keys}
    verifier = Verifier(public, topic=TOPIC, checkpoints_topic=f"{TOPIC}.checkpoints")
    for i, receipt in enumerate(receipts):
        verifier.expect_receipt(f"receipt {i}", receipt)
    for record in reversed(records) if reverse else records:
        assert record.partition is not None
        assert record.offset is not None
        verifier.add_record(record.partition, record.offset, record.value, record.headers)
    for offset, checkpoint in enumerate(checkpoints):
        verifier.add_checkpoint(0, offset, json.dumps(checkpoint).encode(), keyed(checkpoint))
    return verifier.finish()


def kinds(report: Report) -> list[tuple[str, int | None, int | None]]:
    return [(p.kind, p.partition, p.offset) for p in report.problems]


def test_unit_link_matches_the_spec_vectors() -> None:
    writer = "00112233445566778899aabbccddeeff"
    digest = "a" * 64
    first = link_of(writer, 0, GENESIS, digest)
    assert first == spec_link(writer, 0, GENESIS, digest)
    # The test vectors docs/operations.md states.
    assert first == "0f7c6dfd08b845eab8c142e8c159fafd2a178d9a0c56b59322369957685a60ac"
    second = link_of(writer, 1, first, "b" * 64)
    assert second == "8b3fb383e5872dcddeffae2a7f266a3d1a558599518ff36910e48b53dca1e86d"


def test_unit_a_clean_signed_trail_in_any_order_has_no_problem() -> None:
    key = SigningKey.generate()
    a, b = ChainedWriter(), ChainedWriter()
    records = placed([r for pair in zip(a.records(50), b.records(50), strict=True) for r in pair])
    report = verify(records, [key.checkpoint(a), key.checkpoint(b)], [key], reverse=True)
    assert report.clean, report.problems
    assert (report.records_checked, report.records_valid, report.writers) == (100, 100, 2)
    assert report.signed
    assert report.checkpoints_valid == 2
    assert report.warnings == []


def test_unit_unsigned_and_uncovered_are_warnings() -> None:
    key = SigningKey.generate()
    writer = ChainedWriter()
    first = writer.records(3)
    checkpoint = key.checkpoint(writer)
    records = placed([*first, *writer.records(2)])
    unsigned = verify(records)
    assert unsigned.clean
    assert [w.kind for w in unsigned.warnings] == ["unsigned"]
    signed = verify(records, [checkpoint], [key])
    assert signed.clean
    (warning,) = signed.warnings
    assert (warning.kind, warning.seq, warning.last_seq) == ("not_covered", 3, 4)
    assert (warning.partition, warning.offset) == (records[3].partition, records[3].offset)


def test_unit_altered_copy_is_found_where_it_is() -> None:
    records = placed(ChainedWriter().records(6))
    copy = replace(with_value(records[2], b'{"prompt":"rewritten"}'), partition=0, offset=99)
    report = verify([*records, copy])
    assert kinds(report) == [("altered", 0, 99)]
    assert report.records_valid == 6


def test_unit_made_up_chain_headers_are_forged() -> None:
    writer = ChainedWriter()
    records = placed(writer.records(4))
    value = b'{"prompt":"never said"}'
    digest = hashlib.sha256(value).hexdigest()
    next_seq = Record(value, chain_headers(writer.writer, 4, digest, "c" * 64), None, 1, 50)
    same_seq = Record(value, chain_headers(writer.writer, 1, digest, "d" * 64), None, 2, 60)
    no_headers = Record(value, [("rg-digest", f"sha256:{digest}".encode())], None, 0, 70)
    report = verify([*records, next_seq, same_seq, no_headers])
    assert sorted(kinds(report)) == [("forged", 0, 70), ("forged", 1, 50), ("forged", 2, 60)]


def test_unit_a_gap_is_missing_and_a_covered_gap_is_truncated() -> None:
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = placed(writer.records(10))
    checkpoint = key.checkpoint(writer)
    gap = verify([*records[:4], *records[5:]], [checkpoint], [key])
    (problem,) = gap.problems
    assert (problem.kind, problem.seq, problem.partition, problem.offset) == (
        "truncated",
        4,
        records[5].partition,
        records[5].offset,
    )
    unsigned_gap = verify([*records[:4], *records[5:]])
    assert [(p.kind, p.seq) for p in unsigned_gap.problems] == [("missing", 4)]
    tail_cut = verify(records[:7], [checkpoint], [key])
    (problem,) = tail_cut.problems
    assert (problem.kind, problem.seq, problem.last_seq) == ("truncated", 7, 9)
    assert (problem.topic, problem.partition, problem.offset) == (f"{TOPIC}.checkpoints", 0, 0)


def test_unit_void_positions_carry_the_chain_past_a_lost_record() -> None:
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = placed(writer.records(6))
    void_link = records[3].header("rg-chain").removeprefix("sha256:")
    report = verify(
        [*records[:3], *records[4:]], [key.checkpoint(writer, void={3: void_link})], [key]
    )
    assert report.clean, report.problems


def test_unit_duplicate_and_conflict_at_one_position() -> None:
    writer = ChainedWriter()
    records = placed(writer.records(5))
    doubled = replace(records[1], partition=2, offset=40)
    # A second, different record correctly chained at seq 2: two writers' worth of one position.
    other = ChainedWriter(writer=writer.writer, seq=1, link=records[1].header("rg-chain")[7:])
    rival = replace(other.record({"prompt": "rival"}), partition=1, offset=41)
    report = verify([*records, doubled, rival])
    assert sorted(kinds(report)) == [("conflict", 1, 41), ("duplicate", 2, 40)]


def test_unit_bad_signature_unknown_key_and_rotation() -> None:
    # A rotation is a restart: the writer before it signed with the retired key, the writer
    # after it (a new id) with the current one.
    retired, current = SigningKey.generate(), SigningKey.generate("current-2")
    before, after = ChainedWriter(), ChainedWriter()
    records = placed([*before.records(3), *after.records(3)])
    old = retired.checkpoint(before)
    new = current.checkpoint(after)
    assert verify(records, [old, new], [retired, current]).clean
    tampered = {**new, "seq": 1, "count": 2}
    report = verify(records, [old, tampered], [retired, current])
    assert [(p.kind, p.offset) for p in report.problems] == [("bad_signature", 1)]
    unknown = verify(records, [old, new], [current])
    assert [(p.kind, p.offset) for p in unknown.problems] == [("bad_signature", 0)]
    assert derived_key_id(load_pem_public_key(retired.public_pem())) == retired.key_id  # type: ignore[arg-type]


def test_unit_receipts_verify_and_an_altered_one_does_not() -> None:
    records = placed(ChainedWriter().records(4))
    good = receipt_of(records[2], TOPIC)
    assert verify(records, receipts=[good]).clean
    for field, value in (("seq", 3), ("digest", "sha256:" + "0" * 64), ("offset", 7)):
        report = verify(records, receipts=[{**good, field: value}])
        assert [p.kind for p in report.problems] == ["receipt"], field


def test_unit_poison_checkpoints_are_malformed_findings_and_the_check_goes_on() -> None:
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = placed(writer.records(3))
    verifier = Verifier(
        {key.key_id: key.private.public_key()},
        topic=TOPIC,
        checkpoints_topic=f"{TOPIC}.checkpoints",
    )
    for record in records:
        assert record.partition is not None
        assert record.offset is not None
        verifier.add_record(record.partition, record.offset, record.value, record.headers)
    poison = [b"[" * 5000, b"\xff\xfe", b"not json", b"[1]", None, b'{"seq":' + b"9" * 5000 + b"}"]
    for offset, value in enumerate(poison):
        verifier.add_checkpoint(0, offset, value, None)
    good = key.checkpoint(writer)
    verifier.add_checkpoint(0, len(poison), json.dumps(good).encode(), keyed(good))
    report = verifier.finish()
    assert [(p.kind, p.offset) for p in report.problems] == [
        ("malformed_checkpoint", offset) for offset in range(len(poison))
    ]
    assert (report.checkpoints_checked, report.checkpoints_valid) == (len(poison) + 1, 1)
    assert report.signed


# The review's matrix: six records of one writer, a genuine checkpoint at seq 5 signed with the
# current key, and a retired key (retired before now) in the hands of someone else.
RETIRED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def keyring(current: SigningKey, retired: SigningKey) -> dict[str, PublicKey]:
    return {
        current.key_id: PublicKey(current.key_id, current.private.public_key(), current=True),
        retired.key_id: PublicKey(
            retired.key_id, retired.private.public_key(), current=False, until=RETIRED_AT
        ),
    }


def verify_with(
    keys: dict[str, PublicKey],
    records: list[Record],
    checkpoints: Sequence[dict[str, Any]],
    *,
    require_signed: bool = True,
) -> Report:
    verifier = Verifier(
        keys, topic=TOPIC, checkpoints_topic=f"{TOPIC}.checkpoints", require_signed=require_signed
    )
    for record in records:
        assert record.partition is not None
        assert record.offset is not None
        verifier.add_record(record.partition, record.offset, record.value, record.headers)
    for offset, checkpoint in enumerate(checkpoints):
        verifier.add_checkpoint(0, offset, json.dumps(checkpoint).encode(), keyed(checkpoint))
    return verifier.finish()


def test_unit_which_checkpoints_are_trusted_the_six_cases() -> None:
    current, retired = SigningKey.generate(), SigningKey.generate()
    keys = keyring(current, retired)
    writer = ChainedWriter()
    records = placed(writer.records(6))
    genuine = current.checkpoint(writer)
    link = {seq: r.header("rg-chain").removeprefix("sha256:") for seq, r in enumerate(records)}
    without_2 = [r for i, r in enumerate(records) if i != 2]
    # 1. intact
    assert verify_with(keys, records, [genuine]).clean
    # 2. seq 2 deleted
    report = verify_with(keys, without_2, [genuine])
    assert [(p.kind, p.seq) for p in report.problems] == [("truncated", 2)]
    # 3. seq 2 deleted, and a retired-key checkpoint of 2099 voids it: not trusted, still cut.
    late = retired.checkpoint(writer, {2: link[2]}, at="2099-01-01T00:00:00.000000Z")
    report = verify_with(keys, without_2, [genuine, late])
    assert sorted(
        (p.kind, p.offset if p.kind != "truncated" else None) for p in report.problems
    ) == [
        ("expired_key", 1),
        ("truncated", None),
    ]
    # 4. a retired-key checkpoint (dated inside the key's window) voids seq 3, which is there.
    backdated = retired.checkpoint(writer, {3: link[3]}, at="2025-06-01T00:00:00.000000Z")
    report = verify_with(keys, records, [genuine, backdated])
    assert [(p.kind, p.offset) for p in report.problems] == [("expired_key", 1)]
    # 5. seqs 4-5 deleted and no checkpoint at all, keys given: unsigned is a problem.
    report = verify_with(keys, records[:4], [])
    assert [p.kind for p in report.problems] == ["unsigned"]
    assert verify_with(keys, records[:4], [], require_signed=False).clean
    # 6. the same deletion with the checkpoint kept.
    report = verify_with(keys, records[:4], [genuine])
    assert [(p.kind, p.seq, p.last_seq) for p in report.problems] == [("truncated", 4, 5)]


def test_unit_a_writer_signs_with_one_key_only() -> None:
    # A retired key with no end of validity: its holder still cannot speak for a writer whose
    # checkpoints another key signed.
    current, retired = SigningKey.generate(), SigningKey.generate()
    keys = keyring(current, retired)
    keys[retired.key_id] = replace(keys[retired.key_id], until=None)
    writer = ChainedWriter()
    records = placed(writer.records(6))
    void = retired.checkpoint(writer, {2: records[2].header("rg-chain")[7:]})
    report = verify_with(
        keys, [r for i, r in enumerate(records) if i != 2], [current.checkpoint(writer), void]
    )
    assert sorted(p.kind for p in report.problems) == ["key_mismatch", "truncated"]


def test_unit_a_checkpoint_signed_with_a_retired_key_after_its_successor_took_over() -> None:
    # An old writer signed (genuinely) with the retired key inside its window; a checkpoint of
    # that writer dated inside the window but read after a checkpoint of the current key dated
    # past it was written after the retirement: a backdated forgery.
    current, retired = SigningKey.generate(), SigningKey.generate()
    keys = keyring(current, retired)
    old, new = ChainedWriter(), ChainedWriter()
    old_records = old.records(4)
    old_genuine = retired.checkpoint(old, at="2025-12-01T00:00:00.000000Z")
    old_records += old.records(2)
    records = placed([*old_records, *new.records(2)])
    forged = retired.checkpoint(
        old, {4: old_records[4].header("rg-chain")[7:]}, at="2025-12-02T00:00:00.000000Z"
    )
    kept = [r for r in records if r is not records[4]]
    report = verify_with(keys, kept, [old_genuine, current.checkpoint(new), forged])
    assert ("expired_key", 2) in [(p.kind, p.offset) for p in report.problems]
    assert "missing" in [p.kind for p in report.problems]
    # Without the forgery: the old writer's last records are only not covered.
    report = verify_with(keys, records, [old_genuine, current.checkpoint(new)])
    assert report.clean, report.problems


def test_unit_a_trusted_checkpoint_voiding_a_record_on_the_topic_is_a_conflict() -> None:
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = placed(writer.records(6))
    report = verify(
        records, [key.checkpoint(writer, {3: records[3].header("rg-chain")[7:]})], [key]
    )
    assert [(p.kind, p.seq, p.partition, p.offset) for p in report.problems] == [
        ("conflict", 3, records[3].partition, records[3].offset)
    ]


# -- version 2: the tree, the note, cumulative voids ----------------------------------------


def lossy_writer(count: int, lost: set[int]) -> tuple[ChainedWriter, list[Record], dict[int, str]]:
    """A writer of `count` positions, those in `lost` lost for good; its records, placed, and
    its void digests."""
    writer = ChainedWriter()
    records, void = [], {}
    for seq in range(count):
        if seq in lost:
            void[seq] = writer.lose()
        else:
            records.append(writer.record())
    return writer, placed(records), void


def upto(void: dict[int, str], seq: int) -> dict[int, str]:
    return {s: d for s, d in void.items() if s <= seq}


def test_unit_a_v2_trail_with_lost_positions_verifies_from_its_latest_checkpoint_alone() -> None:
    key = SigningKey.generate()
    writer, records, void = lossy_writer(30, {4, 11, 12, 29})
    checkpoints = [checkpoint_v2(key, writer, upto(void, s), seq=s) for s in (9, 20, 29)]
    report = verify(records, checkpoints, [key], reverse=True)
    assert report.clean, report.problems
    assert report.warnings == []
    assert report.checkpoints_valid == 3
    # What a witness keeps: the latest checkpoint only. It lists every void up to its seq.
    alone = verify(records, checkpoints[-1:], [key])
    assert alone.clean, alone.problems
    assert alone.warnings == []
    # Without the void list the lost positions are what they would be: truncated.
    bare = verify(records, [checkpoint_v2(key, writer, seq=29)], [key])
    assert [(p.kind, p.seq, p.last_seq) for p in bare.problems] == [
        ("truncated", 4, 4),
        ("truncated", 11, 12),
        ("truncated", 29, 29),
    ]


def test_unit_a_v2_tree_that_is_not_the_trails_is_a_conflict_where_the_chain_agrees() -> None:
    key = SigningKey.generate()
    writer, records, void = lossy_writer(12, {3})
    good = checkpoint_v2(key, writer, upto(void, 5), seq=5)
    wrong = checkpoint_v2(key, writer, void, tree=writer.tree(10))  # the root of 0..10 at 11
    report = verify(records, [good, wrong], [key])
    (problem,) = report.problems
    assert (problem.kind, problem.topic, problem.partition, problem.offset) == (
        "conflict",
        f"{TOPIC}.checkpoints",
        0,
        1,
    )
    assert (problem.writer, problem.seq) == (writer.writer, 11)
    assert "positions 0..11" in problem.detail
    assert "seq 5" in problem.detail  # the last checkpoint whose tree matched
    # A void digest that is not the lost record's: its leaf, and the link after it, differ.
    liar = checkpoint_v2(key, writer, {3: "0" * 64})
    lied = verify(records, [liar], [key])
    assert "forged" in {p.kind for p in lied.problems}


def test_unit_a_v2_note_that_does_not_open_with_the_checkpoints_key_is_a_bad_signature() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    writer, records, _ = lossy_writer(5, set())
    genuine = checkpoint_v2(key, writer)
    text = genuine["note"].split("\n\n")[0] + "\n"
    # The note signed by another key, the JSON by the right one.
    forged = sign_json(key.private, {**genuine, "note": spec_note(text, ORIGIN, other.private)})
    report = verify(records, [genuine, forged], [key])
    assert [(p.kind, p.offset) for p in report.problems] == [("bad_signature", 1)]
    assert "note" in report.problems[0].detail
    # Another key name with its own origin opens with the same key: the name is the note's.
    renamed_text = text.replace(ORIGIN, "other.test", 1)
    renamed = sign_json(
        key.private, {**genuine, "note": spec_note(renamed_text, "other.test", key.private)}
    )
    assert verify(records, [renamed], [key]).clean


def test_unit_every_single_bit_change_of_a_v2_note_is_refused() -> None:
    key = SigningKey.generate()
    writer, records, _ = lossy_writer(3, set())
    genuine = checkpoint_v2(key, writer)
    value = json.dumps(genuine, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    escaped = json.dumps(genuine["note"], ensure_ascii=False)[1:-1].encode()
    start = value.index(escaped)
    assert verify(records, [genuine], [key]).clean
    resigned = 0
    for index in range(start, start + len(escaped)):
        for bit in range(8):
            changed = bytearray(value)
            changed[index] ^= 1 << bit
            variants = [bytes(changed)]
            try:  # the same change with the JSON signature made again: the note alone
                body = json.loads(bytes(changed))
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("note"), str):
                variants.append(json.dumps(sign_json(key.private, body)).encode())
                resigned += 1
            for variant in variants:
                verifier = Verifier({key.key_id: key.private.public_key()}, topic=TOPIC)
                verifier.add_checkpoint(0, 0, variant, keyed(genuine))
                report = verifier.finish()
                assert report.checkpoints_valid == 0, (index - start, bit, report.problems)
                assert {p.kind for p in report.problems} <= {
                    "bad_signature",
                    "malformed_checkpoint",
                }, (index - start, bit)
    # Most changes still make JSON; the others (invalid UTF-8, a broken escape) are malformed.
    assert resigned > 8 * len(escaped) * 0.7


def test_unit_a_void_every_v2_checkpoint_repeats_is_kept_and_reported_once() -> None:
    key = SigningKey.generate()
    writer, records, void = lossy_writer(12, {3})
    checkpoints = [checkpoint_v2(key, writer, void, seq=s) for s in (5, 8, 11)]
    verifier = Verifier({key.key_id: key.private.public_key()}, topic=TOPIC)
    for offset, checkpoint in enumerate(checkpoints):
        verifier.add_checkpoint(0, offset, json.dumps(checkpoint).encode(), keyed(checkpoint))
    # Kept with the first checkpoint listing it only: memory grows with the lost positions.
    assert [len(c.void) for c in verifier._checkpoints] == [1, 0, 0]
    # The record of seq 3 turns up after all (Kafka stored it though it was judged lost):
    # one conflict, however many checkpoints list the void.
    value = f"lost {writer.writer} 3".encode()
    assert hashlib.sha256(value).hexdigest() == void[3]
    stored = Record(value, chain_headers(writer.writer, 3, void[3], writer.links[3]), None, 0, 99)
    report = verify([*records, stored], checkpoints, [key])
    assert [(p.kind, p.seq, p.offset) for p in report.problems] == [("conflict", 3, 99)]


def test_unit_a_chain_header_given_twice_is_forged() -> None:
    # Readers differ on which copy counts: a second, identical rg-seq changes nothing for one
    # that takes the last, so it was clean; both copies are refused now.
    for name in ("rg-digest", "rg-writer", "rg-seq", "rg-chain"):
        records = placed(ChainedWriter().records(4))
        doubled = records[2]
        twice = replace(doubled, headers=[*doubled.headers, (name, dict(doubled.headers)[name])])
        report = verify([*records[:2], twice, records[3]])
        assert (report.problems[0].kind, report.problems[0].offset) == ("forged", twice.offset)
        assert name in report.problems[0].detail
        # Its position is then empty: a gap.
        assert [p.kind for p in report.problems] == ["forged", "missing"], name
        assert report.records_valid == 3


def test_unit_a_checkpoint_keyed_by_another_writer_is_not_trusted() -> None:
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = placed(writer.records(4))
    checkpoint = key.checkpoint(writer)
    value = json.dumps(checkpoint).encode()
    for record_key in (b"f" * 32, None, keyed(checkpoint) + b" "):
        verifier = Verifier({key.key_id: key.private.public_key()}, require_signed=True)
        for record in records:
            assert record.partition is not None
            assert record.offset is not None
            verifier.add_record(record.partition, record.offset, record.value, record.headers)
        verifier.add_checkpoint(0, 0, value, record_key)
        report = verifier.finish()
        assert [p.kind for p in report.problems] == ["malformed_checkpoint", "unsigned"]
        assert report.checkpoints_valid == 0


def test_unit_a_checkpoint_at_a_void_seq_must_name_the_void_link() -> None:
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = placed(writer.records(4))
    lost_link = records[3].header("rg-chain")[7:]
    genuine = key.checkpoint(writer, {3: lost_link})
    assert verify(records[:3], [genuine], [key]).clean
    lying = {**genuine, "chain": "sha256:" + "ab" * 32}
    signed = key.resign(lying)
    report = verify(records[:3], [signed], [key])
    assert [(p.kind, p.seq, p.offset) for p in report.problems] == [("conflict", 3, 0)]


def test_unit_not_covered_is_a_problem_when_strict() -> None:
    key = SigningKey.generate()
    writer = ChainedWriter()
    first = writer.records(3)
    checkpoint = key.checkpoint(writer)
    records = placed([*first, *writer.records(2)])
    for strict, clean in ((False, True), (True, False)):
        verifier = Verifier({key.key_id: key.private.public_key()}, strict=strict)
        for record in records:
            assert record.partition is not None
            assert record.offset is not None
            verifier.add_record(record.partition, record.offset, record.value, record.headers)
        verifier.add_checkpoint(0, 0, json.dumps(checkpoint).encode(), keyed(checkpoint))
        report = verifier.finish()
        findings = report.problems if strict else report.warnings
        assert report.clean is clean
        assert [(f.kind, f.seq, f.last_seq) for f in findings] == [("not_covered", 3, 4)]
    # Strict and unsigned: no checkpoint covers anything, a problem too.
    verifier = Verifier({}, strict=True)
    verifier.add_record(0, 0, first[0].value, first[0].headers)
    assert [p.kind for p in verifier.finish().problems] == ["unsigned"]


def test_unit_a_witness_checkpoint_counts_like_one_on_the_topic() -> None:
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = placed(writer.records(6))
    kept = json.dumps(key.checkpoint(writer)).encode()
    verifier = Verifier({key.key_id: key.private.public_key()}, topic=TOPIC, require_signed=True)
    for record in records[:4]:  # the tail cut, the checkpoints topic emptied
        assert record.partition is not None
        assert record.offset is not None
        verifier.add_record(record.partition, record.offset, record.value, record.headers)
    verifier.add_witness_checkpoint("kept.json", kept)
    report = verifier.finish()
    assert [(p.kind, p.seq, p.last_seq, p.topic, p.offset) for p in report.problems] == [
        ("truncated", 4, 5, "kept.json", None)
    ]
    assert report.checkpoints_valid == 1


def test_unit_the_reviews_signed_edge_cases() -> None:
    # A 4-record writer (seqs 0, 1, 3, 4; seq 2 lost and void); every case re-signed, so only
    # the form decides. A refused checkpoint leaves seq 2 unexplained: missing.
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = placed(writer.records(5))
    void_link = records[2].header("rg-chain")[7:]
    genuine = key.checkpoint(writer, {2: void_link})
    kept = [r for r in records if r is not records[2]]
    for name, (given, verdict) in edge_cases(genuine).items():
        value = given
        if verdict != "clean" and not name.startswith("sig-"):
            value = json.dumps(key.resign(json.loads(given))).encode()  # signed as it is
        verifier = Verifier({key.key_id: key.private.public_key()}, topic=TOPIC)
        for record in kept:
            assert record.partition is not None
            assert record.offset is not None
            verifier.add_record(record.partition, record.offset, record.value, record.headers)
        verifier.add_checkpoint(0, 0, value, writer.writer.encode())
        report = verifier.finish()
        found = sorted(p.kind for p in report.problems)
        if verdict == "clean":
            assert found == [], name
        else:
            assert found == ["malformed_checkpoint", "missing"], name


def test_unit_free_text_in_key_id_is_signed_by_the_documented_escapes() -> None:
    key = SigningKey.generate()
    writer = ChainedWriter()
    records = placed(writer.records(2))
    key_id = 'k\x01\x1f\x7f\u2028<&>/é\U0001f600"\\\n'
    checkpoint = key.checkpoint(writer)
    body = key.resign({**checkpoint, "key_id": key_id})
    signed = canonical_json({k: v for k, v in body.items() if k != "signature"})
    spelled = '"key_id":"k\\u0001\\u001f\x7f\u2028<&>/é\U0001f600\\"\\\\\\n"'
    assert spelled.encode() in signed
    verifier = Verifier({key_id: key.private.public_key()}, topic=TOPIC)
    for record in records:
        assert record.partition is not None
        assert record.offset is not None
        verifier.add_record(record.partition, record.offset, record.value, record.headers)
    verifier.add_checkpoint(0, 0, json.dumps(body).encode(), writer.writer.encode())
    assert verifier.finish().clean
