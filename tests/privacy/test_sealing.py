"""The cryptography of erasure: sealed fields, wrapped keys, the KEK file (unit, no broker)."""

import base64
import os
from pathlib import Path

import pytest

from app.privacy.sealing import (
    Kek,
    SealingError,
    is_sealed,
    kid_of,
    load_kek,
    open_sealed,
    seal,
)


def test_unit_a_sealed_field_opens_only_for_its_event_field_and_key() -> None:
    kek = Kek(os.urandom(32))
    key = kek.new_key(kek.subject_hash("alice"))
    sealed = seal(key, "ev-1", "prompt", "canary-É")
    assert is_sealed(sealed)
    assert "canary" not in sealed
    assert kid_of(sealed) == key.kid
    assert open_sealed(key, "ev-1", "prompt", sealed) == "canary-É"
    for event_id, field in (("ev-2", "prompt"), ("ev-1", "response")):
        with pytest.raises(SealingError):
            open_sealed(key, event_id, field, sealed)
    other = kek.new_key(key.subject)
    with pytest.raises(SealingError):
        open_sealed(other, "ev-1", "prompt", sealed)


def test_unit_a_wrapped_key_unwraps_only_with_its_kek_and_subject() -> None:
    kek = Kek(os.urandom(32))
    subject = kek.subject_hash("alice")
    key = kek.new_key(subject)
    wrapped = kek.wrap(key)
    assert kek.unwrap(subject, key.kid, wrapped) == key
    with pytest.raises(SealingError, match="does not unwrap"):
        Kek(os.urandom(32)).unwrap(subject, key.kid, wrapped)
    with pytest.raises(SealingError):
        kek.unwrap(kek.subject_hash("bob"), key.kid, wrapped)


def test_unit_the_subject_hash_is_keyed_and_names_no_one() -> None:
    kek = Kek(os.urandom(32))
    assert kek.subject_hash("alice") == kek.subject_hash("alice")
    assert kek.subject_hash("alice") != Kek(os.urandom(32)).subject_hash("alice")
    assert "alice" not in kek.subject_hash("alice")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not base64 !!\n", "not one line of base64"),
        (base64.b64encode(os.urandom(16)) + b"\n", "16 bytes, 32 wanted"),
    ],
)
def test_unit_a_bad_kek_file_is_named(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "kek"
    path.write_bytes(content)
    with pytest.raises(SealingError, match=problem):
        load_kek(path)
    with pytest.raises(SealingError, match="cannot read"):
        load_kek(tmp_path / "missing")
    good = os.urandom(32)
    path.write_bytes(base64.b64encode(good) + b"\n")
    assert load_kek(path) == good
