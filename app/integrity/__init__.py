"""Everything integrity: the hash chain each writer keeps (`chain`), signed checkpoints and keys
(`checkpoint`, `checkpointer`, `keys`) and their verification (`verifier`). No web stack here, so
`ractogateway-kafka verify` runs without FastAPI. See docs/integrity.md for the construction."""

from app.integrity.chain import GENESIS, ChainPosition, ChainWriter, link_of

__all__ = ["GENESIS", "ChainPosition", "ChainWriter", "link_of"]
