"""Integrity of the audit trail: the hash chain each writer keeps (`app.integrity.chain`), and
as they come the signed checkpoints, keys and the verifier. Nothing here imports the web
stack, so verification runs without it. See docs/integrity.md for the construction."""

from app.integrity.chain import GENESIS, ChainPosition, ChainWriter, link_of

__all__ = ["GENESIS", "ChainPosition", "ChainWriter", "link_of"]
