"""A corpus of evidence bundles made from one real, clean bundle (`ractogateway-kafka export`
of a real trail): each scenario a bundle file and the arguments to check it with, so that two
verifiers (the Python `verify --bundle` and the Go `verifier/`) can be run on all of it and their
reports compared (docs/auditors.md). Scenarios cover a clean bundle, every finding kind a
bundle check can give, and files that are not bundles.

    python -m tests.helpers.bundle_corpus CLEAN.zip SIGNING.key.pem ORIGIN OUT_DIR

writes OUT_DIR/<name>.zip and OUT_DIR/corpus.json (name, file, args, expected kinds)."""

import base64
import dataclasses
import hashlib
import json
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.integrity.bundle import (
    CHECKPOINTS,
    LISTED,
    MANIFEST,
    OPENED,
    PROOFS,
    RECORDS,
    SIGNATURE,
    WRITERS,
    KafkaLine,
    sign_manifest,
)
from app.integrity.chain import link_of
from app.integrity.checkpoint import Checkpoint, canonical_json
from app.integrity.keys import derived_key_id
from bench.goverifier import make_bundle
from tests.helpers.erased import erased_subject_values

Members = list[tuple[str, bytes]]


@dataclass
class Scenario:
    """One bundle of the corpus: its file name, verify's arguments (besides --bundle and
    --json), the kinds of problem or warning it must give (exit 2: none), and its exit code."""

    name: str
    args: list[str]
    kinds: set[str] = field(default_factory=set)
    exit: int = 1


def _read(path: Path) -> Members:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _zip(members: Members, out: Path, stored: frozenset[str] = frozenset()) -> None:
    with (
        warnings.catch_warnings(),  # a member twice is a scenario: zipfile warns of it
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        warnings.simplefilter("ignore")
        for name, data in members:
            kind = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=kind)


def _get(members: Members, name: str) -> bytes:
    return next(data for n, data in members if n == name)


def _put(members: Members, name: str, data: bytes) -> Members:
    return [(n, data if n == name else d) for n, d in members]


def _lines(data: bytes) -> list[bytes]:
    return [line + b"\n" for line in data.split(b"\n") if line]


def _resign(members: Members, key: Ed25519PrivateKey) -> Members:
    """The members with a manifest that lists them as they now are, signed by `key`."""
    manifest = json.loads(_get(members, MANIFEST))
    held = {name for name, _ in members}
    for name in (*LISTED, *([OPENED] if OPENED in held else [])):
        data = _get(members, name)
        manifest["members"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest["records"] = len(_lines(_get(members, RECORDS)))
    manifest["key_id"] = derived_key_id(key.public_key())
    encoded = canonical_json(manifest)
    return _put(_put(members, MANIFEST, encoded), SIGNATURE, sign_manifest(encoded, key))


def _records(members: Members) -> list[KafkaLine]:
    return [KafkaLine.decode(line) for line in _lines(_get(members, RECORDS))]


def _with_header(line: KafkaLine, name: str, value: bytes | None) -> KafkaLine:
    headers = tuple((n, value if n == name else v) for n, v in line.headers)
    return dataclasses.replace(line, headers=headers)


def _header(line: KafkaLine, name: str) -> bytes:
    return next(v or b"" for n, v in line.headers if n == name)


def _seq_of(line: KafkaLine) -> int:
    return int(_header(line, "rg-seq"))


def _trusted_v2(members: Members) -> list[tuple[KafkaLine, Checkpoint]]:
    found = []
    for raw in _lines(_get(members, CHECKPOINTS)):
        line = KafkaLine.decode(raw)
        if line.key == b"writers":
            continue
        checkpoint = Checkpoint.from_json(line.value)
        if checkpoint.version == 2:
            found.append((line, checkpoint))
    return found


def _append_checkpoint(
    members: Members, like: KafkaLine, checkpoint: Checkpoint, key: Ed25519PrivateKey, name: str
) -> Members:
    signed = checkpoint.sign(key, name=name)
    line = dataclasses.replace(like, offset=like.offset + 10_000, value=signed.to_bytes())
    return _put(members, CHECKPOINTS, _get(members, CHECKPOINTS) + line.encode())


def _pem(key: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _flip_stored_byte(path: Path, member: str) -> None:
    """Flip one byte of a stored member's data in the ZIP: its CRC-32 no longer matches."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    raw = bytearray(path.read_bytes())
    name_length = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    raw[start + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def make_corpus(clean: Path, key: Ed25519PrivateKey, origin: str, out: Path) -> list[Scenario]:
    """Write the corpus's bundles to `out`; the scenarios, in order."""
    out.mkdir(parents=True, exist_ok=True)
    public = _pem(key, out / "service.pub.pem")
    other = Ed25519PrivateKey.generate()
    other_public = _pem(other, out / "other.pub.pem")
    members = _read(clean)
    records = _records(members)
    given = ["--public-key", str(public)]
    scenarios: list[Scenario] = []

    def add(
        name: str,
        built: Members,
        kinds: set[str],
        args: list[str] | None = None,
        exit_code: int | None = None,
    ) -> None:
        _zip(built, out / f"{name}.zip")
        code = exit_code if exit_code is not None else (1 if kinds - {"not_covered"} else 0)
        scenarios.append(Scenario(name, given if args is None else args, kinds, code))

    def records_as(change: Callable[[list[KafkaLine]], list[KafkaLine]]) -> Members:
        lines = change(list(records))
        return _resign(_put(members, RECORDS, b"".join(line.encode() for line in lines)), key)

    add("clean", members, set())
    add("clean_strict", members, set(), [*given, "--strict"])
    add("trust_bundle_keys", members, set(), ["--trust-bundle-keys"])
    # The check does not depend on the records' order: across partitions, by seq, reversed.
    add(
        "reordered_across_partitions",
        records_as(lambda lines: sorted(lines, key=_seq_of, reverse=True)),
        set(),
    )
    add("record_dropped", records_as(lambda lines: lines[:3] + lines[4:]), set())
    add("record_twice", records_as(lambda lines: [*lines, lines[2]]), {"duplicate"})

    def altered_value(lines: list[KafkaLine]) -> list[KafkaLine]:
        lines[1] = dataclasses.replace(lines[1], value=(lines[1].value or b"") + b" ")
        return lines

    add("value_altered", records_as(altered_value), {"altered"})

    def rival(lines: list[KafkaLine]) -> list[KafkaLine]:
        value = (lines[1].value or b"").replace(b'"r"', b'"R"')
        digest = b"sha256:" + hashlib.sha256(value).hexdigest().encode()
        copy = _with_header(dataclasses.replace(lines[1], value=value), "rg-digest", digest)
        return [*lines, dataclasses.replace(copy, offset=copy.offset + 10_000)]

    add("conflicting_record", records_as(rival), {"conflict", "bad_proof"})

    def relinked(lines: list[KafkaLine]) -> list[KafkaLine]:
        lines[5] = _with_header(lines[5], "rg-chain", b"sha256:" + b"ab" * 32)
        return lines

    add("link_rewritten", records_as(relinked), {"forged"})

    def header_twice(lines: list[KafkaLine]) -> list[KafkaLine]:
        lines[2] = dataclasses.replace(
            lines[2], headers=(*lines[2].headers, ("rg-seq", _header(lines[2], "rg-seq")))
        )
        return lines

    add("header_twice", records_as(header_twice), {"forged"})

    def framed(lines: list[KafkaLine]) -> list[KafkaLine]:
        value = b"\x00\x00\x00\x00\x07" + (lines[0].value or b"")
        lines[0] = dataclasses.replace(
            lines[0], value=value, headers=(*lines[0].headers, ("rg-schema-id", b"8"))
        )
        return lines

    add("schema_id_contradicted", records_as(framed), {"altered", "bad_proof"})

    # A member changed after the manifest was signed; a member missing, added, twice.
    changed = _get(members, RECORDS).replace(b'"partition":', b'"partition": ', 1)
    add("member_altered", _put(members, RECORDS, changed), {"altered"})
    add("member_missing", [(n, d) for n, d in members if n != PROOFS], {"missing", "bad_proof"})
    add("member_added", [*members, ("notes.txt", b"hello\n")], {"forged"})
    add("member_twice", [*members, (RECORDS, b"")], {"forged"})
    add("manifest_not_of_form", _put(members, MANIFEST, b"{}"), {"forged"})
    add("manifest_sig_missing", [(n, d) for n, d in members if n != SIGNATURE], {"bad_signature"})
    forged_sig = sign_manifest(_get(members, MANIFEST), other)
    add("manifest_signature_forged", _put(members, SIGNATURE, forged_sig), {"bad_signature"})
    add(
        "manifest_key_exporter",
        _resign(members, other),
        set(),
        [*given, "--manifest-key", str(other_public)],
    )
    add(
        "wrong_key",
        members,
        {"bad_signature", "unsigned", "bad_proof"},
        ["--public-key", str(other_public)],
    )
    add(
        "expired_key",
        members,
        {"expired_key", "unsigned", "bad_proof"},
        ["--public-key", f"{public}@2000-01-01T00:00:00Z"],
    )

    # Proofs: a flipped bit, none at all.
    proofs = _lines(_get(members, PROOFS))
    first = json.loads(proofs[0])
    lines_of_proof = first["proof"].split("\n")
    flipped = base64.b64decode(lines_of_proof[3])
    lines_of_proof[3] = base64.b64encode(bytes([flipped[0] ^ 0x80]) + flipped[1:]).decode()
    first["proof"] = "\n".join(lines_of_proof)
    bad = canonical_json(first) + b"\n"
    add(
        "proof_bit_flipped",
        _resign(_put(members, PROOFS, bad + b"".join(proofs[1:])), key),
        {"bad_proof"},
    )
    # Proofs left out of records a signed tree covers: bad_proof, not a benign not_covered.
    add("no_proofs", _resign(_put(members, PROOFS, b""), key), {"bad_proof"})

    def appended(lines: list[KafkaLine]) -> list[KafkaLine]:
        # A record after the writer's last checkpoint, correctly linked: no proof can exist.
        last = max(lines, key=_seq_of)
        value = (last.value or b"").replace(b'"r"', b'"later"')
        digest = hashlib.sha256(value).hexdigest()
        writer, seq = _header(last, "rg-writer").decode(), _seq_of(last) + 1
        chain = link_of(writer, seq, _header(last, "rg-chain").decode()[7:], digest)
        later = _with_header(
            dataclasses.replace(last, value=value, offset=last.offset + 1),
            "rg-digest",
            f"sha256:{digest}".encode(),
        )
        later = _with_header(later, "rg-seq", str(seq).encode())
        return [*lines, _with_header(later, "rg-chain", f"sha256:{chain}".encode())]

    add("record_after_the_last_checkpoint", records_as(appended), {"not_covered"})
    add(
        "record_after_the_last_checkpoint_strict",
        records_as(appended),
        {"not_covered"},
        [*given, "--strict"],
        exit_code=1,
    )
    add(
        "proof_line_not_of_form",
        _resign(_put(members, PROOFS, b"[]\n" + b"".join(proofs)), key),
        {"forged"},
    )

    # Checkpoints: none, a stranger's line, signed lies by the key holder, another key.
    add("unsigned", _resign(_put(members, CHECKPOINTS, b""), key), {"unsigned", "bad_proof"})
    v2 = _trusted_v2(members)
    like, last = v2[-1]
    garbage = dataclasses.replace(like, offset=like.offset + 20_000, value=b"not a checkpoint")
    add(
        "malformed_checkpoint",
        _resign(_put(members, CHECKPOINTS, _get(members, CHECKPOINTS) + garbage.encode()), key),
        {"malformed_checkpoint"},
    )
    add(
        "checkpoint_line_not_of_form",
        _resign(_put(members, CHECKPOINTS, b"{}\n" + _get(members, CHECKPOINTS)), key),
        {"forged"},
    )
    forked = dataclasses.replace(last, tree="ab" * 32, note="", signature="")
    add("fork", _resign(_append_checkpoint(members, like, forked, key, origin), key), {"fork"})
    lying = dataclasses.replace(last, chain="cd" * 32, note="", signature="")
    add(
        "checkpoint_names_other_link",
        _resign(_append_checkpoint(members, like, lying, key, origin), key),
        {"conflict"},
    )
    target = next(r for r in records if int(_header(r, "rg-seq")) <= last.seq)
    seq = int(_header(target, "rg-seq"))
    voided = dataclasses.replace(
        last, void={seq: _header(target, "rg-digest").decode()[7:]}, note="", signature=""
    )
    add(
        "checkpoint_voids_a_record",
        _resign(_append_checkpoint(members, like, voided, key, origin), key),
        {"conflict"},
    )
    stranger = dataclasses.replace(
        last, key_id=derived_key_id(other.public_key()), note="", signature=""
    )
    add(
        "checkpoint_of_unknown_key",
        _resign(_append_checkpoint(members, like, stranger, other, origin), key),
        {"bad_signature"},
    )
    add(
        "checkpoint_key_mismatch",
        _resign(_append_checkpoint(members, like, stranger, other, origin), key),
        {"key_mismatch"},
        [*given, "--public-key", str(other_public)],
    )

    # The log of writers: an entry forged, emptied, a writer it does not know.
    entries = _lines(_get(members, WRITERS))
    entry = KafkaLine.decode(entries[0])
    broken = dataclasses.replace(entry, value=b"{}").encode()
    add(
        "writers_entry_forged",
        _resign(_put(members, WRITERS, broken + b"".join(entries[1:])), key),
        {"forged", "fork"},
    )
    add("writers_log_emptied", _resign(_put(members, WRITERS, b""), key), {"rollback"})
    stranger_start = dataclasses.replace(
        entry,
        key=b"f" * 32,
        value=canonical_json(
            {
                "kind": "start",
                "origin": f"{origin}/writer/{'f' * 32}",
                "time": "2026-01-01T00:00:00.000000Z",
                "writer": "f" * 32,
            }
        ),
    ).encode()
    add(
        "unknown_writer",
        _resign(_put(members, WRITERS, stranger_start), key),
        {"unknown_writer", "rollback"},
    )
    add(
        "unknown_writer_strict",
        _resign(_put(members, WRITERS, stranger_start), key),
        {"unknown_writer", "rollback"},
        [*given, "--strict"],
    )
    hole = b"".join(entries[:1]) + b"".join(
        dataclasses.replace(KafkaLine.decode(e), offset=KafkaLine.decode(e).offset + 1).encode()
        for e in entries[1:]
    )
    add("writers_log_hole", _resign(_put(members, WRITERS, hole), key), {"rollback"})

    # The opened view of an export with erasure on: listed and signed, checked like any member.
    view = canonical_json({"topic": records[0].topic, "partition": 0, "offset": 0, "value": {}})
    opened = _resign([*members, (OPENED, view + b"\n")], key)
    add("opened_view", opened, set())
    add("opened_view_altered", _put(opened, OPENED, view + b" \n"), {"altered"})
    add("opened_view_missing", [(n, d) for n, d in opened if n != OPENED], {"missing"})
    add("opened_view_unlisted", [*members, (OPENED, view + b"\n")], {"forged"})

    # The container: a bad CRC-32, a cut file, not a ZIP at all.
    name = "member_bad_crc"
    _zip(members, out / f"{name}.zip", stored=frozenset({RECORDS}))
    _flip_stored_byte(out / f"{name}.zip", RECORDS)
    scenarios.append(Scenario(name, given, {"altered"}, 1))
    whole = clean.read_bytes()
    (out / "truncated_file.zip").write_bytes(whole[: len(whole) // 2])
    scenarios.append(Scenario("truncated_file", given, set(), 2))
    (out / "not_a_zip.zip").write_bytes(b"PK\x03\x04 this is not a bundle\n")
    scenarios.append(Scenario("not_a_zip", given, set(), 2))
    # An erased subject: its sealed records (their key destroyed) and its erasure record, a
    # trail of its own signed with the same key: clean, one erasure record.
    erased = erased_subject_values()
    make_bundle(len(erased), out / "erased_subject.zip", key, values=erased)
    scenarios.append(Scenario("erased_subject", given, set(), 0))
    (out / "corpus.json").write_text(
        json.dumps(
            [dataclasses.asdict(s) | {"kinds": sorted(s.kinds)} for s in scenarios], indent=2
        )
    )
    return scenarios


def main(argv: list[str]) -> int:
    """The command line: CLEAN.zip SIGNING.key.pem ORIGIN OUT_DIR."""
    clean, key_file, origin, out = argv
    key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    scenarios = make_corpus(Path(clean), key, origin, Path(out))
    print(f"{len(scenarios)} scenarios in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__: list[Any] = ["Scenario", "make_corpus"]
