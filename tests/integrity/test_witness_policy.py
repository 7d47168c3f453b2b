"""The witness policy (app/integrity/witness_policy.py): RG_AUDIT_WITNESSES and `verify
--witness-policy`, read strictly, every mistake named."""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.witness import WitnessError, witness_key_text
from app.integrity.witness_policy import WitnessPolicy

WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WITNESS = witness_key_text("witness.example/w1", WITNESS_KEY.public_key())


def test_unit_policy_reads_the_setting_and_names_what_is_wrong() -> None:
    text = json.dumps({"k": 1, "witnesses": [{"url": "http://127.0.0.1:7380/", "key": WITNESS}]})
    policy = WitnessPolicy.parse(text)
    assert policy.k == 1
    assert policy.witnesses[0].url == "http://127.0.0.1:7380"
    assert [k.name for k in policy.witness_keys()] == ["witness.example/w1"]
    one = [{"url": "http://a", "key": WITNESS}]
    bad = {
        json.dumps({"k": 2, "witnesses": one}): "more than",
        json.dumps({"k": 0, "witnesses": one}): "k",
        json.dumps({"k": 1, "witnesses": []}): "witnesses",
        json.dumps({"k": 1, "witnesses": [{"url": "ftp://a", "key": WITNESS}]}): "url",
        json.dumps({"k": 1, "witnesses": [{"url": "http://a", "key": "x+1+2"}]}): "verifier key",
        json.dumps({"k": 1, "witnesses": one, "x": 1}): "x",
        "not json": "JSON",
    }
    for value, named in bad.items():
        with pytest.raises(WitnessError, match=named):
            WitnessPolicy.parse(value)
    twice = {"k": 1, "witnesses": [{"url": "http://a", "key": WITNESS}] * 2}
    with pytest.raises(WitnessError, match="same key name"):
        WitnessPolicy.parse(json.dumps(twice))
