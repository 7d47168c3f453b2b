"""Trees kept in files (app/integrity/tree_store.py): the same roots and proofs as the tree in
memory (which tests/integrity/test_merkle.py checks against Go's sumdb/tlog), across flushes,
reopening, and flushes torn by a crash."""

import os
import random
from pathlib import Path

from app.integrity.merkle import HASH_SIZE, MerkleTree, leaf_hash
from app.integrity.tree_store import TreeFiles
from tests.helpers.tlog import TlogCheck

ENTRIES = [f"record {i}".encode() for i in range(1100)]


def memory_tree(count: int) -> MerkleTree:
    tree = MerkleTree()
    for entry in ENTRIES[:count]:
        tree.append(entry)
    return tree


def test_unit_a_tree_in_files_answers_as_the_tree_in_memory(tmp_path: Path) -> None:
    rng = random.Random(7)
    files = TreeFiles(tmp_path / "w")
    reference = memory_tree(len(ENTRIES))
    for count, entry in enumerate(ENTRIES, start=1):
        files.append(entry)
        if rng.random() < 0.05:
            files.flush()
        if rng.random() < 0.01:
            files.close()
            files = TreeFiles(tmp_path / "w")
        if count % 97 == 0 or count in (1, 2, 3, 1024):
            assert files.root() == reference.root(count)
            index = rng.randrange(count)
            assert files.inclusion(index) == reference.inclusion(index, count)
            old = rng.randrange(count + 1)
            assert files.consistency(old) == reference.consistency(old, count)
    files.close()


def test_reopened_trees_have_go_tlog_s_roots(tmp_path: Path, tlogcheck: TlogCheck) -> None:
    files = TreeFiles(tmp_path / "w")
    for entry in ENTRIES[:777]:
        files.append(entry)
    files.close()
    reopened = TreeFiles(tmp_path / "w")
    roots = tlogcheck.roots(ENTRIES[:777])
    assert [reopened.root(size) for size in range(778)] == roots
    reopened.close()


def test_unit_a_torn_flush_leaves_a_consistent_tree_of_the_leaves_written(tmp_path: Path) -> None:
    files = TreeFiles(tmp_path / "w")
    for entry in ENTRIES[:600]:
        files.append(entry)
    files.close()
    # A crash mid-flush: half a leaf written past the last whole one, parents missing on two
    # levels, and a level file cut inside a hash.
    with (tmp_path / "w" / "level-0.hashes").open("ab") as leaves:
        leaves.write(leaf_hash(ENTRIES[600])[:13])
    os.truncate(tmp_path / "w" / "level-1.hashes", 120 * HASH_SIZE + 5)
    os.truncate(tmp_path / "w" / "level-3.hashes", 10 * HASH_SIZE)
    reopened = TreeFiles(tmp_path / "w")
    assert len(reopened) == 600
    assert reopened.root() == memory_tree(600).root()
    reopened.append(ENTRIES[600])
    assert reopened.root() == memory_tree(601).root()
    reopened.close()
    assert (tmp_path / "w" / "level-0.hashes").stat().st_size == 601 * HASH_SIZE
    assert (tmp_path / "w" / "level-1.hashes").stat().st_size == 300 * HASH_SIZE
