"""A Merkle tree whose stored hashes live in files, so that proofs for millions of records cost
little memory and survive a restart.

Layout: one folder per tree; in it `level-<k>.hashes` holds the hashes of level k (level 0 the
leaves) as consecutive 32-byte values, hash i of level k at byte offset 32·i. Level k+1 always
holds exactly ⌊count(k)/2⌋ hashes, each the node hash of the pair below it. Appends are
buffered and written by `flush()`; reads take the files (`os.pread`) or the buffer.

Crash safety: the files are derived data (every hash follows from the leaves, and the leaves
from the audit topic). At open, a level is cut to whole hashes and to what the level below
supports, and missing parents are computed again from the level below, so a flush torn
anywhere leaves a consistent tree of the leaves that were written.
"""

import os
from pathlib import Path

from app.integrity.merkle import HASH_SIZE, MerkleTree, node_hash

_MAX_LEVELS = 64


class TreeFiles(MerkleTree):
    """A `MerkleTree` kept in `directory` (created when missing); `flush()` writes what was
    appended, `close()` flushes and closes the files."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._fds: list[int] = []
        self._written: list[int] = []  # hashes of each level in its file
        self._pending: list[list[bytes]] = []  # appended, not yet written
        self._open()

    def _path(self, level: int) -> Path:
        return self.directory / f"level-{level}.hashes"

    def _open(self) -> None:
        level = 0
        while level == 0 or self._path(level).exists() or self._written[level - 1] >= 2:
            fd = os.open(self._path(level), os.O_RDWR | os.O_CREAT, 0o600)
            self._fds.append(fd)
            self._pending.append([])
            whole = os.fstat(fd).st_size // HASH_SIZE
            supported = whole if level == 0 else min(whole, self._written[level - 1] // 2)
            os.ftruncate(fd, supported * HASH_SIZE)
            self._written.append(supported)
            if level > 0:
                self._repair(level)
            level += 1
            if level == _MAX_LEVELS:
                break

    def _repair(self, level: int) -> None:
        """Compute the parents a torn flush did not write, from the level below."""
        expected = self._written[level - 1] // 2
        missing = b"".join(
            node_hash(self._get(level - 1, 2 * i), self._get(level - 1, 2 * i + 1))
            for i in range(self._written[level], expected)
        )
        if missing:
            os.pwrite(self._fds[level], missing, self._written[level] * HASH_SIZE)
            self._written[level] = expected

    def _count(self, level: int) -> int:
        if level >= len(self._fds):
            return 0
        return self._written[level] + len(self._pending[level])

    def _get(self, level: int, index: int) -> bytes:
        written = self._written[level]
        if index >= written:
            return self._pending[level][index - written]
        value = os.pread(self._fds[level], HASH_SIZE, index * HASH_SIZE)
        if len(value) != HASH_SIZE:
            raise OSError(f"{self._path(level)} ends before hash {index}")
        return value

    def _put(self, level: int, value: bytes) -> None:
        if level == len(self._fds):
            self._fds.append(os.open(self._path(level), os.O_RDWR | os.O_CREAT, 0o600))
            os.ftruncate(self._fds[level], 0)
            self._written.append(0)
            self._pending.append([])
        self._pending[level].append(value)

    def flush(self, *, sync: bool = False) -> None:
        """Write every appended hash, lowest level first (so a torn flush loses parents, which
        the next open computes again, never leaves under them); `sync`: to the disk."""
        for level, pending in enumerate(self._pending):
            if pending:
                offset = self._written[level] * HASH_SIZE
                os.pwrite(self._fds[level], b"".join(pending), offset)
                self._written[level] += len(pending)
                pending.clear()
            if sync:
                os.fsync(self._fds[level])

    def close(self) -> None:
        """Flush and close the files."""
        self.flush()
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
