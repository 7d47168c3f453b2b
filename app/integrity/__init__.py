"""Everything integrity: the hash chain, signed checkpoints, keys and verification. No web
stack here, so the verifier runs without FastAPI (see docs/integrity.md)."""
