"""C2SP signed notes, checkpoints and tlog-proofs, checked with Go's golang.org/x/mod/sumdb/note,
github.com/transparency-dev/formats and sumdb/tlog (tests/helpers/tlog.py): implementations this
project did not write read what we write, and we read what they write."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.merkle import MerkleTree
from app.integrity.note import (
    NoteError,
    TlogProof,
    TreeHead,
    Verifier,
    key_id,
    open_note,
    parse_note,
    sign_note,
    verifier_key,
)
from tests.helpers.tlog import TlogCheck

ORIGIN = "rg.example/audit/0123456789abcdef0123456789abcdef"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def signer_key(name: str, key: Ed25519PrivateKey) -> str:
    """sumdb/note's private key text for `key`."""
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    encoded = base64.b64encode(b"\x01" + seed).decode()
    return f"PRIVATE+KEY+{name}+{key_id(name, key.public_key()).hex()}+{encoded}"


def checkpoint_note(size: int, tree: MerkleTree, key: Ed25519PrivateKey = KEY) -> bytes:
    return sign_note(TreeHead(ORIGIN, size, tree.root(size)).text(), ORIGIN, key).encode()


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    built = MerkleTree()
    for i in range(300):
        built.append(f"record {i}".encode())
    return built


def test_go_opens_our_checkpoints_with_our_verifier_key(
    tree: MerkleTree, tlogcheck: TlogCheck
) -> None:
    vkey = verifier_key(ORIGIN, KEY.public_key())
    for size in (0, 1, 2, 7, 256, 300):
        note = checkpoint_note(size, tree)
        opened = tlogcheck.open_note(note, [vkey])
        assert opened == (
            f"{ORIGIN}\n{size}\n{base64.b64encode(tree.root(size)).decode()}\n",
            [ORIGIN],
        )
        assert tlogcheck.checkpoint(note, ORIGIN, [vkey]) == (size, tree.root(size))
    assert isinstance(
        tlogcheck.checkpoint(checkpoint_note(5, tree), "other.example/log", [vkey]), str
    )


def test_we_open_notes_go_signed_and_ignore_unknown_keys(tlogcheck: TlogCheck) -> None:
    text = f"{ORIGIN}\n12\n{base64.b64encode(bytes(32)).decode()}\n"
    both = tlogcheck.sign(text, [signer_key(ORIGIN, KEY), signer_key("witness.example", OTHER)])
    assert (
        both.decode()
        == sign_note(text, ORIGIN, KEY)
        + sign_note(text, "witness.example", OTHER).split("\n\n", 1)[1]
    )
    note = open_note(both, [Verifier.of(ORIGIN, KEY.public_key())])
    assert note.text == text
    assert note.verified == (ORIGIN,)
    assert [s.name for s in note.signatures] == [ORIGIN, "witness.example"]
    assert Verifier.parse(verifier_key("witness.example", OTHER.public_key())) == Verifier.of(
        "witness.example", OTHER.public_key()
    )
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        open_note(both, [Verifier.of("nobody.example", OTHER.public_key())])


def test_every_single_bit_change_of_a_checkpoint_is_rejected_by_both(
    tree: MerkleTree, tlogcheck: TlogCheck
) -> None:
    note = checkpoint_note(300, tree)
    vkey = verifier_key(ORIGIN, KEY.public_key())
    verifier = Verifier.of(ORIGIN, KEY.public_key())
    for bit in range(len(note) * 8):
        changed = bytearray(note)
        changed[bit // 8] ^= 1 << (bit % 8)
        ours_accepts = True
        try:
            opened = open_note(bytes(changed), [verifier])
            TreeHead.parse(opened.text)
        except NoteError:
            ours_accepts = False
        go = tlogcheck.checkpoint(bytes(changed), ORIGIN, [vkey])
        assert not ours_accepts, bit
        if not isinstance(go, str):
            # Go's base64 ignores the unused low bits of a last character: another spelling
            # of the same signature, which our strict decoder refuses.
            signature = bytes(changed).rsplit(b" ", 1)[1]
            assert base64.b64decode(signature) == base64.b64decode(note.rsplit(b" ", 1)[1])


def test_go_checks_our_tlog_proofs(tree: MerkleTree, tlogcheck: TlogCheck) -> None:
    vkey = verifier_key(ORIGIN, KEY.public_key())
    for size, index in [(1, 0), (2, 1), (300, 0), (300, 137), (300, 299), (256, 255)]:
        proof = TlogProof(index, tuple(tree.inclusion(index, size)), checkpoint_note(size, tree))
        encoded = proof.encode()
        assert TlogProof.parse(encoded) == proof
        assert tlogcheck.tlog_proof(encoded, ORIGIN, [vkey], tree.leaf(index)) is None
        assert (
            tlogcheck.tlog_proof(encoded, ORIGIN, [vkey], tree.leaf((index + 1) % 300)) is not None
        )
    extra = TlogProof(5, tuple(tree.inclusion(5, 300)), checkpoint_note(300, tree), b"\x00rg")
    assert TlogProof.parse(extra.encode()) == extra
    assert tlogcheck.tlog_proof(extra.encode(), ORIGIN, [vkey], tree.leaf(5)) is None
    for bit in range(0, len(extra.encode()) * 8, 3):
        changed = bytearray(extra.encode())
        changed[bit // 8] ^= 1 << (bit % 8)
        if tlogcheck.tlog_proof(bytes(changed), ORIGIN, [vkey], tree.leaf(5)) is None:
            # Only the opaque extra data may change without breaking the proof, or the unused
            # low bits of a base64 text, which Go ignores and our strict decoder refuses.
            try:
                parsed: TlogProof | None = TlogProof.parse(bytes(changed))
                error = ""
            except NoteError as exc:
                parsed, error = None, str(exc)
            assert "canonical" in error if parsed is None else parsed.extra != extra.extra


@pytest.mark.parametrize(
    "text",
    [
        "log\n012\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "log\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "log\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n",
        "log\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
        "log\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
        "\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "log\n12\n",
        "log\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "log\n1 2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    ],
)
def test_unit_checkpoint_texts_have_one_spelling(text: str) -> None:
    with pytest.raises(NoteError):
        TreeHead.parse(text)


def test_unit_malformed_notes_and_proofs_are_note_errors() -> None:
    good = sign_note("log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "log", KEY)
    parse_note(good.encode())
    for bad in [
        good.replace("\u2014", "-"),
        good[:-1],
        good.replace("\n\n", "\n"),
        good + "\n",
        good.replace("log ", "lo g "),
    ]:
        with pytest.raises(NoteError):
            parse_note(bad.encode())
    with pytest.raises(NoteError):
        parse_note(b"\xff\n\n\xe2\x80\x94 a AAAAAA==\n")
    with pytest.raises(NoteError):
        sign_note("two\n\nparagraphs\n", "log", KEY)
    with pytest.raises(NoteError):
        sign_note("text", "log", KEY)
    with pytest.raises(NoteError):
        sign_note("text\n", "a+b", KEY)
    forged = good.replace(good.split(" ")[-1], base64.b64encode(b"\x00" * 68).decode() + "\n")
    with pytest.raises(NoteError):
        open_note(forged.encode(), [Verifier.of("log", KEY.public_key())])
    proof = TlogProof(0, (), good.encode()).encode()
    for bad_proof in [
        proof.replace(b"index 0", b"index 00"),
        proof.replace(b"@v1", b"@v2"),
        proof.replace(b"\n\n", b"\n", 1),
        proof.replace(b"index 0\n", b"index 0\nAAAA\n"),
    ]:
        with pytest.raises(NoteError):
            TlogProof.parse(bad_proof)
    with pytest.raises(NoteError):
        Verifier.parse(verifier_key("log", KEY.public_key()).replace("+", "+0", 1))
