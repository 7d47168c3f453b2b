"""Erasure on an immutable trail (RG_ERASURE=on): each subject's fields sealed under a data key
of its own before the record's canonical JSON, the keys wrapped by a KEK and kept on a compacted
topic, and an erasure that destroys a key (crypto-shredding). See docs/privacy.md.

- `sealing`: the pure cryptography (no I/O): KEK, subject hash, wrapping, sealed field form;
- `keystore`: the `KeyStore` seam and its Kafka implementation (the `<audit topic>.keys` topic);
- `erasure`: what the write and read paths call: seal events, open fields, erase a subject.
"""
