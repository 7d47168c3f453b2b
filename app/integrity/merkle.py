"""Merkle trees as RFC 6962 / RFC 9162 §2.1 define them, so that any transparency-log verifier
(Go's `golang.org/x/mod/sumdb/tlog`, `transparency-dev/merkle`, C2SP `tlog-proof` readers) checks
our roots and proofs without our code:

    leaf hash  = SHA-256(0x00 || entry)
    node hash  = SHA-256(0x01 || left || right)
    root of 0 entries = SHA-256 of nothing
    root of n > 1 entries splits at k, the largest power of two below n.

`MerkleTree` keeps every complete subtree's hash (level 0 = the leaves; level l, index i = the
subtree over entries [i·2^l, (i+1)·2^l)), as `tlog`'s stored hashes do: appending costs one leaf
hash plus on average one node hash, and any root, inclusion proof or consistency proof of any
size up to the tree's takes O(log n) stored hashes. The verifying functions need no tree.
"""

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
LEAF_VERSION = "rg-leaf-v1"


class ProofError(ValueError):
    """A proof that does not prove what it claims (wrong length, wrong hashes, bad indexes)."""


def leaf_hash(entry: bytes) -> bytes:
    """The hash of one entry: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def leaf_entry(writer: str, seq: int, tail: str) -> bytes:
    """The entry of position `seq` of `writer`'s tree: the UTF-8 text
    `rg-leaf-v1\\n<writer>\\n<seq>\\n<tail>`, `tail` being the record's `leaf_tail()` (its
    digest, and the schema id of a framed value). It commits to the writer, the position and
    the record as stored, never to the record's size; a position whose record was lost for good
    has the entry of the record that was lost."""
    return f"{LEAF_VERSION}\n{writer}\n{seq}\n{tail}".encode()


def leaf_tail(digest_hex: str, schema_id: int | None = None) -> str:
    """What a leaf entry says of its record: `digest_hex` (64 lowercase hex, the record's
    `rg-digest`) and, for a value in the Confluent wire format, a line with its schema id in
    decimal: the digest leaves the 5 framing bytes out, so the schema id the record was stored
    under is covered here."""
    return digest_hex if schema_id is None else f"{digest_hex}\n{schema_id}"


def read_leaf_entry(entry: bytes) -> tuple[str, int, str]:
    """The writer, position and leaf tail of a leaf entry in its one spelling (`leaf_entry` of
    them gives back `entry`: 32-hex writer, decimal seq, 64-hex digest, a schema id below 2^32
    without leading zeros); ValueError for anything else."""
    fields = entry.decode("utf-8", "replace").split("\n")
    if len(fields) not in (4, 5) or fields[0] != LEAF_VERSION:
        raise ValueError(f"not a {LEAF_VERSION} leaf entry")
    writer, seq_text, digest = fields[1:4]
    schema = fields[4] if len(fields) == 5 else None
    numbers = [seq_text] if schema is None else [seq_text, schema]
    if not all(n.isascii() and n.isdecimal() for n in numbers) or (
        schema is not None and int(schema) >= 2**32
    ):
        raise ValueError(f"not a {LEAF_VERSION} leaf entry: a position or schema id is not decimal")
    seq = int(seq_text)
    tail = leaf_tail(digest, None if schema is None else int(schema))
    if (
        len(writer) != 32
        or len(digest) != 64
        or not all(c in "0123456789abcdef" for c in writer + digest)
        or leaf_entry(writer, seq, tail) != entry
    ):
        raise ValueError(f"not a {LEAF_VERSION} leaf entry in its one spelling")
    return writer, seq, tail


def frame_schema_id(value: bytes) -> int | None:
    """The schema id of a value in the Confluent wire format (the byte 0x00, then the id in 4
    bytes big-endian; JSON text never starts with 0x00), None for any other value."""
    if len(value) >= 5 and value[0] == 0:
        return int.from_bytes(value[1:5], "big")
    return None


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below `n` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The right edge of an append-only tree: the roots of its complete subtrees, largest
    first (at most log2 n of them). Enough to append and to compute the root of the whole
    tree, which is all a writer needs to sign a checkpoint; proofs need a `MerkleTree`."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []

    def append_hash(self, leaf: bytes) -> None:
        """Add an entry by its leaf hash (32 bytes)."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf)}")
        current, size = leaf, self.size
        # Each trailing 1 bit of the old size is a complete subtree the new leaf completes.
        while size & 1:
            current = node_hash(self._peaks.pop(), current)
            size >>= 1
        self._peaks.append(current)
        self.size += 1

    def root(self) -> bytes:
        """The root hash of the tree so far."""
        if not self._peaks:
            return EMPTY_ROOT
        root = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            root = node_hash(peak, root)
        return root


class MerkleTree:
    """An append-only tree over entries' leaf hashes, keeping every complete subtree's hash."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = [[]]

    def __len__(self) -> int:
        return self._count(0)

    # Where the hashes live: lists here; `app.integrity.tree_store.TreeFiles` keeps them in files.
    def _count(self, level: int) -> int:
        """How many hashes `level` holds."""
        return len(self._levels[level]) if level < len(self._levels) else 0

    def _get(self, level: int, index: int) -> bytes:
        """The stored hash at `level`, `index`."""
        return self._levels[level][index]

    def _put(self, level: int, value: bytes) -> None:
        """Store the next hash of `level`."""
        if level == len(self._levels):
            self._levels.append([])
        self._levels[level].append(value)

    def append(self, entry: bytes) -> int:
        """Add `entry` (its leaf hash is computed here); returns its index."""
        return self.append_hash(leaf_hash(entry))

    def append_hash(self, leaf: bytes) -> int:
        """Add an entry by its leaf hash (32 bytes); returns its index."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf)}")
        index = self._count(0)
        self._put(0, leaf)
        level, i, current = 0, index, leaf
        # Each odd index completes a subtree with its left sibling: store the parent, go up.
        while i & 1:
            current = node_hash(self._get(level, i - 1), current)
            level += 1
            self._put(level, current)
            i >>= 1
        return index

    def leaf(self, index: int) -> bytes:
        """The leaf hash at `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"no leaf {index} in a tree of {len(self)}")
        return self._get(0, index)

    def subtree(self, start: int, end: int) -> bytes:
        """The root of entries [start, end) as RFC 6962 shapes it (start is a multiple of the
        largest power of two not above end - start, as every subtree a proof names is)."""
        size = end - start
        if size <= 0:
            raise ValueError("an empty range has no subtree")
        if size & (size - 1) == 0:
            level = size.bit_length() - 1
            return self._get(level, start >> level)
        k = _split(size)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the first `size` entries (all by default)."""
        size = len(self) if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self.subtree(0, size)

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        """The inclusion proof of entry `index` in the tree of the first `size` entries
        (RFC 9162 §2.1.3.1), nearest sibling first."""
        size = len(self) if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"index {index} is not in a tree of {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                proof.append(self.subtree(start + k, end))
                end = start + k
            else:
                proof.append(self.subtree(start, start + k))
                start += k
        proof.reverse()
        return proof

    def consistency(self, old: int, new: int | None = None) -> list[bytes]:
        """The consistency proof from the tree of `old` entries to that of `new` (RFC 9162
        §2.1.4.1); empty when old is 0 or old == new."""
        new = len(self) if new is None else new
        self._check_size(new)
        if not 0 <= old <= new:
            raise ValueError(f"no consistency proof from {old} to {new}")
        if old in (0, new):
            return []
        proof: list[bytes] = []
        start, end, whole = 0, new, True
        while True:
            if old - start == end - start:
                if not whole:
                    proof.append(self.subtree(start, end))
                break
            k = _split(end - start)
            if old - start <= k:
                proof.append(self.subtree(start + k, end))
                end = start + k
            else:
                proof.append(self.subtree(start, start + k))
                start += k
                whole = False
        proof.reverse()
        return proof

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self):
            raise ValueError(f"the tree has {len(self)} entries, not {size}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` and `leaf` at `index` imply for a tree of `size` (RFC 9162
    §2.1.3.2); raises ProofError when the proof cannot be one for that index and size."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        _check_hash(p)
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless `proof` shows `leaf` at `index` in the tree of `size` with `root`."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("the inclusion proof leads to another root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless `proof` shows the tree of `old` entries with `old_root` is a
    prefix of the tree of `new` entries with `new_root` (RFC 9162 §2.1.4.2)."""
    if not 0 <= old <= new:
        raise ProofError(f"no consistency from {old} to {new}")
    if old in (0, new):
        # Nothing to prove but that equal sizes have equal roots; any hash here is a forgery.
        if proof:
            raise ProofError(f"a proof from {old} to {new} entries is empty")
        if old == new and old_root != new_root:
            raise ProofError("two roots of one size differ")
        return
    first, second = _consistency_roots(old, new, old_root, proof)
    if first != old_root:
        raise ProofError("the consistency proof leads to another old root")
    if second != new_root:
        raise ProofError("the consistency proof leads to another new root")


def _consistency_roots(
    old: int, new: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """The old and new roots `proof` implies (0 < old < new)."""
    if not proof:
        raise ProofError("the consistency proof is empty")
    for p in proof:
        _check_hash(p)
    hashes = list(proof)
    # When old is a power of two its root is the first node of the path: prepend it.
    if old & (old - 1) == 0:
        hashes.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    return fr, sr


def _check_hash(value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"a proof hash is {HASH_SIZE} bytes, not {len(value)}")
