"""Everything integrity: the hash chain each writer keeps (`chain`), signed checkpoints and keys
(`checkpoint`, `checkpointer`, `keys`) and, as it comes, verification. No web stack here, so
verification runs without FastAPI. See docs/integrity.md for the construction."""

from app.integrity.chain import GENESIS, ChainPosition, ChainWriter, link_of

__all__ = ["GENESIS", "ChainPosition", "ChainWriter", "link_of"]
