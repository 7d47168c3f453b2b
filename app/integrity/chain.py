"""The chain link of an audit record (integrity spec v1, docs/integrity.md).

Each writer's records form a hash chain: link(seq) commits to link(seq - 1), the record's
digest, its sequence number and the writer id, so a record cannot be removed, reordered or
rewritten without breaking every later link.
"""

import hashlib

# prev of a writer's seq 0.
GENESIS = "0" * 64


def link_of(writer: str, seq: int, prev: str, digest_hex: str) -> str:
    """The 64 hex digits of SHA-256 over `rg-chain-v1\\n<writer>\\n<seq>\\n<prev>\\n<digest>`."""
    text = f"rg-chain-v1\n{writer}\n{seq}\n{prev}\n{digest_hex}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
