"""Make a corpus of evidence-bundle scenarios from a clean bundle of a real trail, for checking
a second verifier against this one (docs/auditors.md, "The corpus").

    python -m tests.corpus.make_corpus BUNDLE PRIVATE_KEY OUT_DIR

BUNDLE is an `export` of a real trail (every user: the scenarios need positions 0 and runs of
consecutive records); PRIVATE_KEY the trail's signing key (PEM), with which some scenarios sign
again what they changed — as the key's holder could — so that only the record checks can find
them. OUT_DIR receives `<scenario>.zip` for each scenario, `keys/` (the public keys the
scenarios trust) and `corpus.json`: per scenario its name, what it shows, the bundle, the
arguments of `verify --bundle` (paths relative to OUT_DIR), the exit code and the report this
verifier gives, normalized as the page says (no `bundle`, no `detail`, findings sorted).
"""

import base64
import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.cli import main
from app.integrity.bundle import (
    CHECKPOINTS,
    KEYS,
    MANIFEST,
    PROOFS,
    RECORDS,
    SIGNATURE,
    WRITERS,
    KafkaLine,
    sign_manifest,
)
from app.integrity.chain import link_of
from app.integrity.checkpoint import VERSION_2, Checkpoint, canonical_json
from app.integrity.keys import derived_key_id
from bench.goverifier import make_bundle
from tests.helpers.erased import erased_subject_values

Members = list[tuple[str, bytes]]
SERVICE_KEY, OTHER_KEY = "keys/service.pub.pem", "keys/other.pub.pem"
EPOCH = "1970-01-01T00:00:00Z"


@dataclass
class Source:
    """The clean bundle's members and the keys the scenarios sign with."""

    members: dict[str, bytes]
    key: Ed25519PrivateKey
    other: Ed25519PrivateKey

    def lines(self, member: str) -> list[bytes]:
        return self.members[member].splitlines(keepends=True)

    def records(self) -> list[KafkaLine]:
        return [KafkaLine.decode(line) for line in self.lines(RECORDS)]


@dataclass
class Scenario:
    """One bundle to make: how its members differ from the clean one, and how to verify it."""

    name: str
    about: str
    change: Callable[[Source], Members]
    resign: bool = False  # the manifest updated and signed again with the trail's key
    args: list[str] = field(default_factory=lambda: ["--public-key", SERVICE_KEY])
    stored: bool = False  # members stored, not deflated (to flip a byte of one)


def header(line: KafkaLine, name: str) -> str:
    return next((raw or b"").decode() for n, raw in line.headers if n == name)


def with_headers(line: KafkaLine, **changes: bytes | None) -> KafkaLine:
    """`line` with the named headers' values replaced (None: the header removed)."""
    names = {name.replace("_", "-"): raw for name, raw in changes.items()}
    kept = [(n, names.get(n, raw)) for n, raw in line.headers if names.get(n, raw) is not None]
    return replace(line, headers=tuple(kept))


def records_as(source: Source, lines: list[KafkaLine]) -> Members:
    return [*others(source, RECORDS), (RECORDS, b"".join(line.encode() for line in lines))]


def others(source: Source, *left_out: str) -> Members:
    return [(name, data) for name, data in source.members.items() if name not in left_out]


def clean(source: Source) -> Members:
    return list(source.members.items())


def altered_member(source: Source) -> Members:
    data = source.members[KEYS].replace(b'"current":true', b'"current":false')
    return [*others(source, KEYS), (KEYS, data)]


def dropped_record(source: Source) -> Members:
    return [*others(source, RECORDS), (RECORDS, b"".join(source.lines(RECORDS)[1:]))]


def altered_value(source: Source) -> Members:
    lines = source.records()
    lines[0] = replace(lines[0], value=(lines[0].value or b"").replace(b'"p', b'"P', 1))
    return records_as(source, lines)


def reordered(source: Source) -> Members:
    # Records of several partitions, interleaved otherwise than on the topic: nothing changes.
    lines = source.records()
    return records_as(source, lines[1::2][::-1] + lines[::2])


def duplicate(source: Source) -> Members:
    lines = source.records()
    return records_as(source, [*lines, replace(lines[0], offset=lines[-1].offset + 1000)])


def conflict(source: Source) -> Members:
    lines = source.records()
    first = lines[0]
    value = (first.value or b"").replace(b'"p', b'"Q', 1)
    digest = b"sha256:" + hashlib.sha256(value).hexdigest().encode()
    rival = replace(with_headers(first, rg_digest=digest), value=value, offset=first.offset + 1000)
    return records_as(source, [*lines, rival])


def forged_link(source: Source) -> Members:
    lines = source.records()
    at = next(i for i, line in enumerate(lines) if header(line, "rg-seq") == "0")
    lines[at] = with_headers(lines[at], rg_chain=b"sha256:" + b"ab" * 32)
    return records_as(source, lines)


def forged_headers(source: Source) -> Members:
    lines = source.records()
    lines[0] = with_headers(lines[0], rg_seq=None)
    return records_as(source, lines)


def header_twice(source: Source) -> Members:
    lines = source.records()
    extra = (("rg-writer", next(raw for n, raw in lines[0].headers if n == "rg-writer")),)
    lines[0] = replace(lines[0], headers=lines[0].headers + extra)
    return records_as(source, lines)


def appended(source: Source) -> Members:
    # A record after the writer's last checkpoint, linked as a writer would link it: the chain
    # holds, nothing signed covers it, and it has no proof.
    lines = source.records()
    last = max(lines, key=lambda line: int(header(line, "rg-seq")))
    writer, seq = header(last, "rg-writer"), int(header(last, "rg-seq")) + 1
    value = (last.value or b"").replace(b'"p', b'"A', 1)
    digest = hashlib.sha256(value).hexdigest()
    link = link_of(writer, seq, header(last, "rg-chain")[7:], digest)
    added = with_headers(
        last,
        rg_digest=f"sha256:{digest}".encode(),
        rg_seq=str(seq).encode(),
        rg_chain=f"sha256:{link}".encode(),
    )
    offset = max(line.offset for line in lines if line.partition == last.partition) + 1
    return records_as(source, [*lines, replace(added, value=value, offset=offset)])


def no_proof(source: Source) -> Members:
    return [*others(source, PROOFS), (PROOFS, b"".join(source.lines(PROOFS)[1:]))]


def flipped_proof_bit(source: Source) -> Members:
    first, *rest = source.lines(PROOFS)
    line = json.loads(first)
    text = line["proof"].split("\n")
    hashed = bytearray(base64.b64decode(text[3]))
    hashed[0] ^= 0x01
    text[3] = base64.b64encode(bytes(hashed)).decode()
    line["proof"] = "\n".join(text)
    return [*others(source, PROOFS), (PROOFS, b"".join([canonical_json(line) + b"\n", *rest]))]


def missing_member(source: Source) -> Members:
    return [*others(source, PROOFS), ("notes.txt", b"not in the manifest\n")]


def member_twice(source: Source) -> Members:
    return [*clean(source), (KEYS, source.members[KEYS])]


def manifest_of_another_key(source: Source) -> Members:
    signature = sign_manifest(source.members[MANIFEST], source.other)
    return [*others(source, SIGNATURE), (SIGNATURE, signature)]


def manifest_not_json(source: Source) -> Members:
    return [*others(source, MANIFEST), (MANIFEST, b"{not json")]


def checkpoint_lines(source: Source) -> list[tuple[KafkaLine, Checkpoint | None]]:
    found: list[tuple[KafkaLine, Checkpoint | None]] = []
    for raw in source.lines(CHECKPOINTS):
        line = KafkaLine.decode(raw)
        parsed = None
        if line.key != b"writers":
            with contextlib.suppress(ValueError):
                parsed = Checkpoint.from_json(line.value)
        found.append((line, parsed))
    return found


def with_checkpoint(source: Source, make: Callable[[Checkpoint], Checkpoint]) -> Members:
    """The checkpoints with one more after them: `make` of the writer's last version 2 one."""
    kept = checkpoint_lines(source)
    line, last = next(
        (at, c) for at, c in reversed(kept) if c is not None and c.version == VERSION_2
    )
    assert last is not None
    made = make(last)
    added = replace(line, offset=kept[-1][0].offset + 1, value=made.to_bytes())
    data = source.members[CHECKPOINTS] + added.encode()
    return [*others(source, CHECKPOINTS), (CHECKPOINTS, data)]


def fork(source: Source) -> Members:
    def rival(checkpoint: Checkpoint) -> Checkpoint:
        unsigned = replace(checkpoint, tree="cd" * 32, note="", signature="")
        return unsigned.sign(source.key, name=checkpoint.key_name)

    return with_checkpoint(source, rival)


def key_mismatch(source: Source) -> Members:
    def other(checkpoint: Checkpoint) -> Checkpoint:
        key_id = derived_key_id(source.other.public_key())
        unsigned = replace(checkpoint, key_id=key_id, note="", signature="")
        return unsigned.sign(source.other, name=checkpoint.key_name)

    return with_checkpoint(source, other)


def malformed_checkpoint(source: Source) -> Members:
    line = KafkaLine.decode(source.lines(CHECKPOINTS)[-1])
    bad = replace(line, offset=line.offset + 1, value=b"{not a checkpoint")
    data = source.members[CHECKPOINTS] + bad.encode()
    return [*others(source, CHECKPOINTS), (CHECKPOINTS, data)]


def checkpoint_altered(source: Source) -> Members:
    # The latest writer's checkpoint's time changed under its signature: the proofs lead to it.
    lines = [KafkaLine.decode(raw) for raw in source.lines(CHECKPOINTS)]
    at = max(i for i, line in enumerate(lines) if line.key != b"writers")
    value = (lines[at].value or b"").replace(b'"time":"2', b'"time":"1', 1)
    lines[at] = replace(lines[at], value=value)
    data = b"".join(line.encode() for line in lines)
    return [*others(source, CHECKPOINTS), (CHECKPOINTS, data)]


def checkpoints_emptied(source: Source) -> Members:
    return [*others(source, CHECKPOINTS), (CHECKPOINTS, b"")]


def writers_hole(source: Source) -> Members:
    return [*others(source, WRITERS), (WRITERS, b"".join(source.lines(WRITERS)[1:]))]


def bad_line(source: Source) -> Members:
    return [*others(source, RECORDS), (RECORDS, source.members[RECORDS] + b"[1, 2]\n")]


def erased_subject(source: Source) -> Members:
    """A trail of its own, signed with the trail's key: a subject's sealed records (the key
    destroyed) and its erasure record."""
    values = erased_subject_values()
    with tempfile.TemporaryDirectory() as folder:
        made = Path(folder) / "erased.zip"
        make_bundle(len(values), made, source.key, values=values)
        with zipfile.ZipFile(made) as archive:
            return [(info.filename, archive.read(info)) for info in archive.infolist()]


SCENARIOS = [
    Scenario("clean", "a clean export of a real trail", clean),
    Scenario("clean-strict", "the same with --strict", clean, args=["--strict"]),
    Scenario(
        "trust-bundle-keys",
        "the bundle's own keys, trusted as asked",
        clean,
        args=["--trust-bundle-keys"],
    ),
    Scenario("altered-member", "keys.json changed, the manifest not", altered_member),
    Scenario("dropped-record", "a record left out: the manifest catches it", dropped_record),
    Scenario("altered-value", "a value changed, manifest signed again", altered_value, True),
    Scenario("reordered", "records of several partitions reordered: clean", reordered, True),
    Scenario("duplicate", "a record twice", duplicate, True),
    Scenario("conflict", "another record at a position, its digest consistent", conflict, True),
    Scenario("forged-link", "a made-up rg-chain at seq 0", forged_link, True),
    Scenario("forged-headers", "a record without rg-seq", forged_headers, True),
    Scenario("header-twice", "a record with rg-writer twice", header_twice, True),
    Scenario("proof-removed", "a covered record's proof left out", no_proof, True),
    Scenario("not-covered", "a record appended after the last checkpoint", appended, True),
    Scenario("not-covered-strict", "the same with --strict", appended, True, ["--strict"]),
    Scenario("flipped-proof-bit", "one bit of a proof's hash flipped", flipped_proof_bit, True),
    Scenario("missing-member", "proofs.ndjson gone, a member added", missing_member),
    Scenario("member-twice", "keys.json twice in the ZIP", member_twice),
    Scenario("manifest-other-key", "the manifest signed by another key", manifest_of_another_key),
    Scenario("manifest-not-json", "manifest.json is not JSON", manifest_not_json),
    Scenario(
        "wrong-key",
        "verified with another key than the trail's",
        clean,
        args=["--public-key", OTHER_KEY],
    ),
    Scenario(
        "expired-key",
        "the trail's key given as retired before every checkpoint",
        clean,
        args=["--public-key", f"{SERVICE_KEY}@{EPOCH}"],
    ),
    Scenario("fork", "a second checkpoint of one size with another tree", fork, True),
    Scenario(
        "key-mismatch",
        "a checkpoint of the writer signed with a second trusted key",
        key_mismatch,
        True,
        ["--public-key", SERVICE_KEY, "--public-key", OTHER_KEY],
    ),
    Scenario("malformed-checkpoint", "not a checkpoint", malformed_checkpoint, True),
    Scenario("checkpoint-altered", "the last checkpoint's time changed", checkpoint_altered, True),
    Scenario("checkpoints-emptied", "no checkpoint in the bundle", checkpoints_emptied, True),
    Scenario("writers-hole", "the first entry of the log of writers gone", writers_hole, True),
    Scenario("bad-line", "a line of records.ndjson not of its form", bad_line, True),
    Scenario("bad-crc", "a byte of a stored member flipped under its CRC-32", clean, stored=True),
    Scenario(
        "erased-subject",
        "an erased subject's sealed records and its erasure record",
        erased_subject,
    ),
]


def resigned(members: Members, key: Ed25519PrivateKey) -> Members:
    """The manifest's hashes and count updated and signed again with `key`."""
    held = dict(members)
    manifest = json.loads(held[MANIFEST])
    for name in manifest["members"]:
        data = held.get(name, b"")
        manifest["members"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest["records"] = len(held.get(RECORDS, b"").splitlines())
    manifest_bytes = canonical_json(manifest)
    changed = {MANIFEST: manifest_bytes, SIGNATURE: sign_manifest(manifest_bytes, key)}
    return [(name, changed.get(name, data)) for name, data in members]


def write_zip(path: Path, members: Members, *, stored: bool) -> None:
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with (
        contextlib.suppress(UserWarning),  # a member twice is the point of one scenario
        zipfile.ZipFile(path, "w", compression=method) as archive,
    ):
        for name, data in members:
            archive.writestr(name, data)
    if stored:
        # Flip one byte of records.ndjson's data: its CRC-32 no longer matches.
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(RECORDS)
        raw = bytearray(path.read_bytes())
        name_length = int.from_bytes(
            raw[info.header_offset + 26 : info.header_offset + 28], "little"
        )
        extra_length = int.from_bytes(
            raw[info.header_offset + 28 : info.header_offset + 30], "little"
        )
        raw[info.header_offset + 30 + name_length + extra_length + 2] ^= 0x20
        path.write_bytes(bytes(raw))


def _finding_key(finding: dict[str, Any]) -> tuple[tuple[int, Any], ...]:
    order = ("kind", "topic", "partition", "offset", "writer", "seq", "last_seq")
    return tuple((0, "") if finding[k] is None else (1, finding[k]) for k in order)


def normalized(report: dict[str, Any]) -> dict[str, Any]:
    """The report as two verifiers must agree on it: no `bundle`, no `detail`, sorted."""
    document = {k: v for k, v in report.items() if k != "bundle"}
    for part in ("problems", "warnings"):
        findings = [{k: v for k, v in f.items() if k != "detail"} for f in report[part]]
        document[part] = sorted(findings, key=_finding_key)
    return document


def verify(out: Path, bundle: str, args: list[str]) -> tuple[int, dict[str, Any]]:
    """`verify --bundle --json` in this process (from OUT_DIR: paths are relative)."""
    printed = io.StringIO()
    here = Path.cwd()
    os.chdir(out)
    try:
        with contextlib.redirect_stdout(printed):
            code = main(["verify", "--bundle", bundle, "--json", *args])
    finally:
        os.chdir(here)
    return code, json.loads(printed.getvalue())


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def make(bundle: Path, private_key: Path, out: Path) -> list[dict[str, Any]]:
    """Write the corpus to `out`; its entries."""
    key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"{private_key}: not an Ed25519 private key")
    with zipfile.ZipFile(bundle) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    source = Source(members, key, Ed25519PrivateKey.generate())
    (out / "keys").mkdir(parents=True, exist_ok=True)
    (out / SERVICE_KEY).write_bytes(public_pem(source.key))
    (out / OTHER_KEY).write_bytes(public_pem(source.other))
    entries = []
    for scenario in SCENARIOS:
        changed = scenario.change(source)
        if scenario.resign:
            changed = resigned(changed, source.key)
        name = f"{scenario.name}.zip"
        write_zip(out / name, changed, stored=scenario.stored)
        args = scenario.args
        if "--public-key" not in args and "--trust-bundle-keys" not in args:
            args = ["--public-key", SERVICE_KEY, *args]
        code, report = verify(out, name, args)
        entries.append(
            {
                "name": scenario.name,
                "about": scenario.about,
                "bundle": name,
                "args": args,
                "exit": code,
                "report": normalized(report),
            }
        )
    (out / "corpus.json").write_text(json.dumps({"scenarios": entries}, indent=2) + "\n")
    return entries


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    made = make(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    print(f"{len(made)} scenarios in {sys.argv[3]}", file=sys.stderr)
