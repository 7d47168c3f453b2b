"""app/integrity/stamper.py with a stand-in for the proof index's notes (a tree whose size the
test sets, notes signed for real) and the real authority (OpenSSL behind HTTP on loopback):
a token only when the tree grew, the first authority that answers, failures counted, nothing
kept from an authority outside the CA."""

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.checkpoint import rfc3339
from app.integrity.merkle import MerkleTree
from app.integrity.stamper import NoTimestampError, Stamper
from app.integrity.timestamp import TimestampRecord, check_reply, load_tsa_roots, note_sha256
from app.integrity.writers import WritersNote
from tests.helpers.tsa import Authority, TsaServer


class Notes:
    """Signs notes of a tree of `size` entries, as the proof index does."""

    def __init__(self) -> None:
        self.tree = MerkleTree()
        self.key = Ed25519PrivateKey.generate()
        self.signed: list[WritersNote] = []

    def grow(self, count: int = 1) -> None:
        for _ in range(count):
            self.tree.append(f"entry {len(self.tree)}".encode())

    def writers_size(self) -> int:
        return len(self.tree)

    async def sign_writers_now(self) -> WritersNote | None:
        note = WritersNote.sign(
            "test-log",
            len(self.tree),
            self.tree.root(),
            time=rfc3339(datetime.now(UTC)),
            key_id="k",
            key=self.key,
        )
        self.signed.append(note)
        return note


class Kept:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def __call__(self, value: bytes) -> None:
        self.values.append(value)


def stamper_of(notes: Notes, kept: Kept, urls: list[str], authority: Authority) -> Stamper:
    return Stamper(
        notes,
        kept,
        urls=urls,
        roots=load_tsa_roots(authority.ca_file),
        name="test-log",
        interval_s=1.0,
    )


async def test_a_token_over_a_fresh_note_only_when_the_tree_grew(
    tsa_server: TsaServer, timestamp_authority: Authority
) -> None:
    notes, kept = Notes(), Kept()
    stamper = stamper_of(notes, kept, [tsa_server.url], timestamp_authority)
    try:
        assert await stamper.stamp() is None  # an empty tree: nothing to stamp
        notes.grow(3)
        record = await stamper.stamp()
        assert record is not None
        assert await stamper.stamp() is None  # not grown since
        notes.grow()
        second = await stamper.stamp()
        assert second is not None
        assert second.size == 4
    finally:
        await stamper.close()
    assert [TimestampRecord.from_json(v) for v in kept.values] == [record, second]
    note = notes.signed[0]
    assert (record.size, record.root, record.note_time) == (3, note.root, note.time)
    assert record.note_sha256 == note_sha256(note.note).hex()
    assert record.origin == "test-log/writers"
    assert record.tsa == tsa_server.url
    stamp = check_reply(
        record.token,
        note_sha256(note.note),
        load_tsa_roots(timestamp_authority.ca_file),
        nonce=record.nonce,
    )
    assert record.time == stamp.gen_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert stamper.tokens == 2
    assert stamper.failures == {tsa_server.url: 0}
    assert stamper.last_token_age_s() is not None


async def test_the_first_authority_that_answers_and_failures_counted(
    tsa_server: TsaServer, timestamp_authority: Authority
) -> None:
    down = TsaServer(timestamp_authority)
    down.stop()
    notes, kept = Notes(), Kept()
    stamper = stamper_of(notes, kept, [down.url, tsa_server.url], timestamp_authority)
    try:
        notes.grow()
        record = await stamper.stamp()
        assert record is not None
        assert record.tsa == tsa_server.url
        assert stamper.failures == {down.url: 1, tsa_server.url: 0}
        tsa_server.stop()
        notes.grow()
        with pytest.raises(NoTimestampError, match="ConnectError"):
            await stamper.stamp()
        assert stamper.failures == {down.url: 2, tsa_server.url: 1}
        assert len(kept.values) == 1
        tsa_server.start()  # back: the next round covers the tree as it is then
        notes.grow()
        again = await stamper.stamp()
        assert again is not None
        assert again.size == 3
    finally:
        await stamper.close()


async def test_a_token_from_an_authority_outside_the_ca_is_not_kept(
    timestamp_authority: Authority, outside_authority: Authority
) -> None:
    outside = TsaServer(outside_authority)
    notes, kept = Notes(), Kept()
    stamper = stamper_of(notes, kept, [outside.url], timestamp_authority)
    try:
        notes.grow()
        with pytest.raises(NoTimestampError, match="does not verify"):
            await stamper.stamp()
    finally:
        await stamper.close()
        outside.stop()
    assert kept.values == []
    assert stamper.failures == {outside.url: 1}
