"""Integrity of the audit trail: the hash chain, signed checkpoints and their verification.

Nothing here imports the web stack, so `ractogateway-kafka verify` runs without it.
"""
