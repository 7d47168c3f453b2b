"""app/integrity/timestamp.py against a real authority (OpenSSL's `ts -reply`), and the other
way round: what we keep verifies with `openssl ts -verify`, and a request OpenSSL made gives a
token our code accepts."""

import base64
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.integrity.timestamp import (
    TimestampError,
    TimestampRecord,
    check_reply,
    load_tsa_roots,
    note_sha256,
    timestamp_query,
)
from tests.helpers.tsa import Authority, openssl

NOTE = (
    "ractogateway-kafka/test/writers\n3\nq0ObkjoK9Y8h3u4X7nhBNLbcyvT1JtxZBRvmAcjlQ2A=\n\n— x AAAA\n"
)


def _ask(authority: Authority, note: str = NOTE) -> tuple[bytes, int]:
    query = timestamp_query(note)
    return authority.reply(query.der), query.nonce


def test_a_token_openssl_made_over_our_request_checks(timestamp_authority: Authority) -> None:
    reply, nonce = _ask(timestamp_authority)
    roots = load_tsa_roots(timestamp_authority.ca_file)
    stamp = check_reply(reply, note_sha256(NOTE), roots, nonce=nonce)
    assert stamp.nonce == nonce
    assert abs(stamp.gen_time - datetime.now(UTC)) < timedelta(seconds=30)
    assert "trusted test CA" in stamp.signer


def test_the_nonce_is_random_and_64_bits() -> None:
    nonces = {timestamp_query(NOTE).nonce for _ in range(20)}
    assert len(nonces) == 20
    assert all(0 < n < 2**64 for n in nonces)


def test_a_token_over_another_note_is_refused(timestamp_authority: Authority) -> None:
    reply, nonce = _ask(timestamp_authority, NOTE + "x")
    roots = load_tsa_roots(timestamp_authority.ca_file)
    with pytest.raises(TimestampError, match="stamps sha256:"):
        check_reply(reply, note_sha256(NOTE), roots, nonce=nonce)


def test_another_nonce_is_refused(timestamp_authority: Authority) -> None:
    reply, nonce = _ask(timestamp_authority)
    roots = load_tsa_roots(timestamp_authority.ca_file)
    with pytest.raises(TimestampError, match="nonce"):
        check_reply(reply, note_sha256(NOTE), roots, nonce=nonce + 1)


def test_a_token_of_an_authority_outside_the_ca_is_refused(
    timestamp_authority: Authority, outside_authority: Authority
) -> None:
    reply, nonce = _ask(outside_authority)
    roots = load_tsa_roots(timestamp_authority.ca_file)
    with pytest.raises(TimestampError, match="does not verify"):
        check_reply(reply, note_sha256(NOTE), roots, nonce=nonce)


def test_bytes_that_are_no_answer_are_refused(timestamp_authority: Authority) -> None:
    reply, nonce = _ask(timestamp_authority)
    roots = load_tsa_roots(timestamp_authority.ca_file)
    for broken in (b"", b"\x30\x03\x02\x01\x00", reply[: len(reply) // 2]):
        with pytest.raises(TimestampError):
            check_reply(broken, note_sha256(NOTE), roots, nonce=nonce)
    # One byte of the signed content changed: the signature no longer holds.
    at = reply.find(note_sha256(NOTE))
    altered = reply[:at] + bytes([reply[at] ^ 1]) + reply[at + 1 :]
    with pytest.raises(TimestampError):
        check_reply(altered, bytes([altered[at]]) + note_sha256(NOTE)[1:], roots, nonce=nonce)


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a readable PEM"):
        load_tsa_roots(tmp_path / "absent.pem")
    (tmp_path / "empty.pem").write_text("nothing\n")
    with pytest.raises(ValueError, match="not a readable PEM"):
        load_tsa_roots(tmp_path / "empty.pem")


def test_what_we_keep_verifies_with_openssl(
    timestamp_authority: Authority, outside_authority: Authority, tmp_path: Path
) -> None:
    reply, nonce = _ask(timestamp_authority)
    record = TimestampRecord(
        "o/writers", 3, "ab" * 32, note_sha256(NOTE).hex(), "t", "http://x", nonce, reply, "t"
    )
    kept = TimestampRecord.from_json(record.to_bytes())
    (tmp_path / "kept.tsr").write_bytes(kept.token)
    (tmp_path / "note").write_bytes(NOTE.encode())

    def verify(ca: Path, *data: str) -> subprocess.CompletedProcess[str]:
        command = [openssl(), "ts", "-verify", "-in", str(tmp_path / "kept.tsr"), "-CAfile"]
        return subprocess.run(
            [*command, str(ca), *data], capture_output=True, text=True, check=False
        )

    for data in (["-data", str(tmp_path / "note")], ["-digest", kept.note_sha256]):
        done = verify(timestamp_authority.ca_file, *data)
        assert done.returncode == 0, done.stderr
        assert "Verification: OK" in done.stdout
        assert verify(outside_authority.ca_file, *data).returncode != 0
    other = NOTE.replace("3", "4").encode()
    (tmp_path / "other").write_bytes(other)
    assert verify(timestamp_authority.ca_file, "-data", str(tmp_path / "other")).returncode != 0
    shown = subprocess.run(
        [openssl(), "ts", "-reply", "-in", str(tmp_path / "kept.tsr"), "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shown_nonce = re.search(r"Nonce: 0x([0-9A-Fa-f]+)", shown)
    assert shown_nonce is not None, shown
    assert int(shown_nonce.group(1), 16) == nonce


def test_a_request_openssl_made_gives_a_token_we_accept(
    timestamp_authority: Authority, tmp_path: Path
) -> None:
    (tmp_path / "note").write_bytes(NOTE.encode())
    query = tmp_path / "query.tsq"
    data = str(tmp_path / "note")
    subprocess.run(
        [openssl(), "ts", "-query", "-data", data, "-sha256", "-cert", "-out", str(query)],
        check=True,
        capture_output=True,
    )
    text = subprocess.run(
        [openssl(), "ts", "-query", "-in", str(query), "-text"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r"Nonce: 0x([0-9A-Fa-f]+)", text)
    assert found is not None, text
    reply = timestamp_authority.reply(query.read_bytes())
    roots = load_tsa_roots(timestamp_authority.ca_file)
    stamp = check_reply(reply, note_sha256(NOTE), roots, nonce=int(found.group(1), 16))
    assert stamp.nonce == int(found.group(1), 16)


def test_a_record_is_read_strictly() -> None:
    record = TimestampRecord(
        "o/writers", 3, "ab" * 32, "cd" * 32, "2026-01-01T00:00:00.000000Z", "http://tsa/",
        2**64 - 1, b"\x30\x00", "2026-01-01T00:00:01.000000Z",
    )  # fmt: skip
    assert TimestampRecord.from_json(record.to_bytes()) == record
    good = record.to_bytes().decode()
    for broken in (
        None,
        b"{",
        good.replace('"version":1', '"version":2').encode(),
        good.replace('"size":3', '"size":0').encode(),
        good.replace('"nonce":"', '"nonce":"x').encode(),
        good.replace(base64.b64encode(b"\x30\x00").decode(), "!!").encode(),
        good.replace('"root":"sha256:', '"root":"').encode(),
        good.replace('"note_sha256":"cd', '"note_sha256":"CD').encode(),
        good.replace(',"tsa":"http://tsa/"', "").encode(),
    ):
        with pytest.raises(TimestampError):
            TimestampRecord.from_json(broken)
