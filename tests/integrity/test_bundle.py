"""app/integrity/bundle.py, the rg-bundle-v1 format (no broker): record lines keep every byte
(null key and value, a header twice, a null header), a line or manifest not of the form is
refused, the writer zips what the manifest lists and signs it, the reader tells a ZIP from
not one."""

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.bundle import (
    LISTED,
    MANIFEST,
    MEMBERS,
    RECORDS,
    SIGNATURE,
    BundleFormatError,
    BundleWriter,
    KafkaLine,
    Manifest,
    lines,
    parse_proof_line,
    proof_line,
    read_bundle,
)
from app.integrity.checkpoint import unb64url


def test_unit_a_record_line_keeps_every_byte() -> None:
    line = KafkaLine(
        "audit",
        2,
        17,
        1764590400000,
        None,
        b"\x00\x00\x00\x00\x2a{}",
        (("rg-seq", b"1"), ("rg-seq", b"2"), ("empty", None), ("bin", b"\xff")),
    )
    encoded = line.encode()
    assert encoded.endswith(b"\n")
    assert encoded.count(b"\n") == 1
    assert KafkaLine.decode(encoded.rstrip(b"\n")) == line
    data = json.loads(encoded)
    assert data["key"] is None
    assert base64.b64decode(data["value"]) == line.value
    assert data["headers"][2] == ["empty", None]


@pytest.mark.parametrize(
    "text",
    [
        b"[]",
        b"{not json",
        b'{"topic":"t","partition":0,"offset":0,"timestamp":0,"key":null,"value":null}',
        b'{"topic":"t","partition":"0","offset":0,"timestamp":0,"key":null,"value":null,'
        b'"headers":[]}',
        b'{"topic":"t","partition":0,"offset":0,"timestamp":0,"key":"%%%","value":null,'
        b'"headers":[]}',
        b'{"topic":"t","partition":0,"offset":0,"timestamp":0,"key":null,"value":null,'
        b'"headers":[["a"]]}',
        b'{"topic":"t","partition":0,"offset":0,"timestamp":0,"key":null,"value":null,'
        b'"headers":[],"extra":1}',
        b"[" * 100_000,  # past the JSON parser's recursion limit: a crafted bundle's line
    ],
)
def test_unit_a_line_not_of_the_form_is_refused(text: bytes) -> None:
    with pytest.raises(BundleFormatError):
        KafkaLine.decode(text)


def test_unit_proof_lines_and_member_lines() -> None:
    proof = "c2sp.org/tlog-proof@v1\nindex 0\n\nnote\n\n\u2014 name sig\n".encode()
    assert parse_proof_line(proof_line("ab" * 16, 0, proof).rstrip(b"\n")) == ("ab" * 16, 0, proof)
    with pytest.raises(BundleFormatError):
        parse_proof_line(b'{"writer":"w","seq":"0","proof":"p"}')
    assert list(lines(b"")) == []
    assert list(lines(b"a\nb\n")) == [(0, b"a"), (1, b"b")]


def test_unit_the_writer_zips_what_the_manifest_lists_and_signs_it(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    work = tmp_path / "work"
    work.mkdir()
    writer = BundleWriter(work)
    writer.add(RECORDS, b'{"a":1}\n')
    writer.add(RECORDS, b'{"a":2}\n')
    out = tmp_path / "b.zip"
    topics = {"audit": "a", "checkpoints": "a.checkpoints", "writers": "a.writers"}
    query = {"since": None, "until": None, "user": "u"}
    writer.close(out, key=key, key_id="k", created="2026-12-01T00:00:00.000000Z", query=query,
                 topics=topics)  # fmt: skip
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == list(MEMBERS)
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist())
        manifest_bytes = archive.read(MANIFEST)
        signature = archive.read(SIGNATURE)
    manifest = Manifest.parse(manifest_bytes)
    assert manifest.records == 2
    assert manifest.members[RECORDS] == (hashlib.sha256(b'{"a":1}\n{"a":2}\n').hexdigest(), 16)
    assert set(manifest.members) == set(LISTED)
    assert len(signature) == 87
    key.public_key().verify(unb64url(signature[:86].decode()), manifest_bytes)
    assert not list(tmp_path.glob(".*.partial"))


def test_unit_a_manifest_not_of_the_form_is_refused() -> None:
    with pytest.raises(BundleFormatError, match="not an rg-bundle-v1 manifest"):
        Manifest.parse(b'{"format":"rg-bundle-v2"}')


def test_unit_the_reader_tells_a_bundle_from_other_files(tmp_path: Path) -> None:
    not_zip = tmp_path / "x.zip"
    not_zip.write_bytes(b"hello")
    with pytest.raises(BundleFormatError, match="not a ZIP file"):
        read_bundle(not_zip)
    no_manifest = tmp_path / "y.zip"
    with zipfile.ZipFile(no_manifest, "w") as archive:
        archive.writestr(RECORDS, b"")
    with pytest.raises(BundleFormatError, match=r"no manifest\.json"):
        read_bundle(no_manifest)
