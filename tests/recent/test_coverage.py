"""Which records a signed checkpoint covers, from the checkpoints topic's records (unit: the
records are built here, no broker)."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from app.connection import producer_config
from app.integrity.checkpoint import b64url, new_checkpoint
from app.integrity.checkpointer import Checkpoints
from app.integrity.keys import SigningKey, generate, load_signing_key
from app.integrity.verifier import Verifier
from app.kafka import KafkaMessage, KafkaProducerClient
from app.recent.coverage import CheckpointCoverage
from app.settings import Settings
from tests.helpers.unit_chain import UnitChain

OTHER = "b" * 32


def coverage_with_key(
    tmp_path: Path, *, retired: Path | None = None, max_writers: int = 1024
) -> tuple[CheckpointCoverage, SigningKey]:
    """A coverage over a service's checkpoints with a new key (never started: no broker)."""
    _, key_file, _ = generate(tmp_path / "keys")
    settings = Settings(
        _env_file=None, audit_signing_key_file=key_file, audit_retired_keys_dir=retired
    )
    checkpoints = Checkpoints(
        settings, KafkaProducerClient(config=producer_config(settings)), chain=UnitChain()
    )
    checkpoints.open()
    assert checkpoints.key is not None
    return CheckpointCoverage(checkpoints, max_writers=max_writers), checkpoints.key


def record(value: object, offset: int = 0, key: str | None = None) -> KafkaMessage:
    """A record of the checkpoints topic, keyed by its value's writer as the service keys it
    (`key`: keyed otherwise)."""
    if key is None and isinstance(value, bytes):
        try:
            writer = json.loads(value).get("writer")
        except (ValueError, AttributeError):
            writer = None
        key = writer if isinstance(writer, str) else None
    return KafkaMessage(
        topic="ractogateway.audit.checkpoints",
        partition=0,
        offset=offset,
        timestamp_ms=0,
        key=key,
        value=value,
        headers={},
    )


def signed(key: SigningKey, writer: str, seq: int) -> bytes:
    checkpoint = new_checkpoint(writer=writer, seq=seq, chain="c" * 64, key_id=key.key_id)
    return checkpoint.sign(key.private).to_bytes()


def test_unit_a_verified_checkpoint_of_another_writer_covers_its_records(
    tmp_path: Path,
) -> None:
    coverage, key = coverage_with_key(tmp_path)
    assert coverage.covers(OTHER, 0) is None
    assert coverage.add(record(signed(key, OTHER, 3)))
    assert [coverage.covers(OTHER, seq) for seq in (0, 3, 4)] == [True, True, False]
    # An older checkpoint changes nothing (and is not checked again); a newer one advances.
    assert not coverage.add(record(signed(key, OTHER, 1)))
    assert coverage.add(record(signed(key, OTHER, 9)))
    assert coverage.covers(OTHER, 9) is True
    # This service's own writer: its checkpointer answers (nothing written yet: false).
    assert coverage.covers("a" * 32, 0) is False
    assert coverage.ignored == 0


def test_unit_checkpoints_not_trusted_are_ignored(tmp_path: Path) -> None:
    coverage, key = coverage_with_key(tmp_path)
    _, stranger_file, _ = generate(tmp_path / "stranger")
    stranger = load_signing_key(stranger_file)
    # Signed with an unknown key; with a known key id but another key's signature; not JSON;
    # a JSON object that is not a checkpoint.
    impostor = SigningKey(key_id=key.key_id, private=stranger.private)
    for value in (
        signed(stranger, OTHER, 5),
        signed(impostor, OTHER, 5),
        b"not json",
        {"version": 1},
    ):
        assert not coverage.add(record(value))
    assert coverage.ignored == 4
    assert coverage.covers(OTHER, 0) is None


def test_unit_at_most_max_writers_are_kept_the_least_recently_advanced_dropped(
    tmp_path: Path,
) -> None:
    coverage, key = coverage_with_key(tmp_path, max_writers=2)
    writers = [f"{i:032x}" for i in range(3)]
    coverage.add(record(signed(key, writers[0], 0)))
    coverage.add(record(signed(key, writers[1], 0)))
    coverage.add(record(signed(key, writers[0], 1)))  # writers[0] advanced last
    coverage.add(record(signed(key, writers[2], 0)))
    assert coverage.writers == 2
    assert [coverage.covers(w, 0) for w in writers] == [True, None, True]


def _variants(genuine: bytes) -> dict[str, bytes]:
    """A genuine checkpoint and the same signed content written in ways one reader could take
    differently from another: both paths must refuse each of these."""
    text = genuine.decode()
    body = json.loads(text)
    return {
        "extra field": json.dumps({**body, "note": "hello"}).encode(),
        "duplicate seq": text.replace('{"chain"', '{"seq":999,"chain"', 1).encode(),
        "duplicate seq, same value": text.replace(
            '{"chain"', '{"seq":' + str(body["seq"]) + ',"chain"', 1
        ).encode(),
        "uppercase chain": text.replace(body["chain"], "sha256:" + "C" * 64).encode(),
    }


@pytest.mark.parametrize(
    "variant", ["extra field", "duplicate seq", "duplicate seq, same value", "uppercase chain"]
)
def test_unit_verify_and_the_coverage_view_parse_a_checkpoint_alike(
    tmp_path: Path, variant: str
) -> None:
    coverage, key = coverage_with_key(tmp_path)
    genuine = signed(key, OTHER, 5)
    value = _variants(genuine)[variant]
    assert value != genuine
    trusted_by_coverage = coverage.add(record(value))
    verifier = Verifier({key.key_id: key.public})
    verifier.add_checkpoint(0, 0, value, OTHER.encode())
    report = verifier.finish()
    assert not trusted_by_coverage
    assert coverage.covers(OTHER, 5) is None
    assert [p.kind for p in report.problems] == ["malformed_checkpoint"]
    # The genuine bytes: trusted by both.
    assert coverage.add(record(genuine, offset=1))
    verifier = Verifier({key.key_id: key.public})
    verifier.add_checkpoint(0, 1, genuine, OTHER.encode())
    assert verifier.finish().checkpoints_valid == 1


def test_unit_the_coverage_view_applies_verifys_key_rules(tmp_path: Path) -> None:
    # A retired key valid until 2026-01-01 (its `.until` beside it), the service's current key.
    _, retired_file, retired_public = generate(tmp_path / "old", "old-key")
    folder = tmp_path / "retired"
    folder.mkdir()
    (folder / "old-key.pem").write_bytes(retired_public.read_bytes())
    (folder / "old-key.until").write_text("2026-01-01T00:00:00Z\n")
    retired = load_signing_key(retired_file, "old-key")
    coverage, key = coverage_with_key(tmp_path, retired=folder)

    def at(signer: SigningKey, writer: str, seq: int, time: str, **void: str) -> bytes:
        checkpoint = replace(
            new_checkpoint(writer=writer, seq=seq, chain="c" * 64, key_id=signer.key_id),
            time=time,
            void={int(s.removeprefix("seq")): link for s, link in void.items()},
        )
        return checkpoint.sign(signer.private).to_bytes()

    old_writer, new_writer = "1" * 32, "2" * 32
    # Inside the window: trusted; dated after it: not.
    assert coverage.add(record(at(retired, old_writer, 3, "2025-12-01T00:00:00Z")))
    assert not coverage.add(record(at(retired, "3" * 32, 3, "2099-01-01T00:00:00Z")))
    # The current key takes over (dated past the window): a retired-key checkpoint read after
    # it is not trusted, whatever its date.
    assert coverage.add(record(at(key, new_writer, 1, "2026-06-01T00:00:00Z")))
    assert not coverage.add(record(at(retired, old_writer, 9, "2025-12-02T00:00:00Z")))
    assert coverage.covers(old_writer, 9) is False
    assert coverage.ignored == 2
    # A position a trusted checkpoint lists as lost is not covered.
    assert coverage.add(record(at(key, new_writer, 5, "2026-06-02T00:00:00Z", seq2="d" * 64)))
    assert [coverage.covers(new_writer, s) for s in (1, 2, 3, 5)] == [True, False, True, True]


def test_unit_a_writer_is_covered_by_checkpoints_of_its_own_key_only(tmp_path: Path) -> None:
    _, retired_file, retired_public = generate(tmp_path / "old", "old-key")
    folder = tmp_path / "retired"
    folder.mkdir()
    (folder / "old-key.pem").write_bytes(retired_public.read_bytes())  # no end of validity
    retired = load_signing_key(retired_file, "old-key")
    coverage, key = coverage_with_key(tmp_path, retired=folder)
    assert coverage.add(record(signed(key, OTHER, 3)))
    assert not coverage.add(record(signed(retired, OTHER, 9)))
    assert coverage.covers(OTHER, 9) is False


def test_unit_v2_checkpoints_cover_with_their_cumulative_voids_and_need_an_opening_note(
    tmp_path: Path,
) -> None:
    coverage, key = coverage_with_key(tmp_path)
    _, stranger_file, _ = generate(tmp_path / "stranger")
    stranger = load_signing_key(stranger_file)

    def v2(seq: int, void: dict[int, str], signer: SigningKey = key) -> bytes:
        checkpoint = new_checkpoint(
            writer=OTHER, seq=seq, chain="c" * 64, key_id=key.key_id, void=void, tree=bytes(32)
        ).sign(signer.private, name="example.test/audit")
        # The note signed by `signer`, the JSON always by the key.
        signature = b64url(key.private.sign(checkpoint.signed_bytes()))
        return replace(checkpoint, signature=signature).to_bytes()

    assert coverage.add(record(v2(5, {2: "d" * 64})))
    assert [coverage.covers(OTHER, seq) for seq in (1, 2, 5, 6)] == [True, False, True, False]
    forged_note = v2(9, {2: "d" * 64}, stranger)
    assert not coverage.add(record(forged_note, 1))
    assert coverage.covers(OTHER, 9) is False
    assert coverage.ignored == 1


def test_unit_a_checkpoint_keyed_by_another_writer_is_not_trusted(tmp_path: Path) -> None:
    coverage, key = coverage_with_key(tmp_path)
    value = signed(key, OTHER, 3)
    verifier = Verifier({key.key_id: key.public})
    verifier.add_checkpoint(0, 0, value, b"c" * 32)
    assert [p.kind for p in verifier.finish().problems] == ["malformed_checkpoint"]
    assert not coverage.add(record(value, key="c" * 32))
    assert coverage.covers(OTHER, 3) is None
    assert coverage.ignored == 1
    assert coverage.add(record(value, offset=1))
    assert coverage.covers(OTHER, 3)
