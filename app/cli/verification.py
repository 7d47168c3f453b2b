"""The work of `verify` (app/cli/integrity.py), imported when it runs: the trail read into
`app.integrity.verifier.Verifier` and its report printed, or kept proofs and evidence bundles
checked offline."""

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.cli.common import logger
from app.cli.trail import (
    EXIT_CLEAN,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    VerifyInputError,
    load_public_keys,
    read_topic,
)
from app.connection import consumer_config
from app.integrity.bundle import KEYS, BundleFormatError, read_bundle
from app.integrity.bundle_check import BundleCheck
from app.integrity.kept import KeptFormatError, read_kept
from app.integrity.keys import PublicKey, parse_until
from app.integrity.merkle import ProofError
from app.integrity.note import NoteError
from app.integrity.proofs import check_tlog_proof
from app.integrity.report import Finding, Report
from app.integrity.timestamp import load_tsa_roots
from app.integrity.timestamp_check import TimestampCheck
from app.integrity.verifier import Verifier
from app.integrity.witness import WitnessError
from app.integrity.witness_policy import WitnessPolicy
from app.logs import configure_logging
from app.settings import get_settings


def load_receipts(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    """The receipts of each file (one JSON object, or a list of them), named `file[#i]`."""
    receipts: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError) as exc:
            raise VerifyInputError(f"--receipt {path}: not a readable JSON file") from exc
        items = data if isinstance(data, list) else [data]
        if not items or not all(isinstance(item, dict) for item in items):
            raise VerifyInputError(f"--receipt {path}: expected a receipt object or a list")
        for i, item in enumerate(items):
            receipts.append((str(path) if len(items) == 1 else f"{path}#{i}", item))
    return receipts


def load_checkpoints(paths: list[Path]) -> list[tuple[str, bytes]]:
    """The bytes of each `--checkpoint FILE` (what a witness kept), named by its path, once it
    reads as one of the kept forms (app/integrity/kept.py); its signature and what it says of
    the trail are checked by the verifier."""
    kept: list[tuple[str, bytes]] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise VerifyInputError(f"--checkpoint {path}: not a readable file") from exc
        try:
            read_kept(data)
        except KeptFormatError as exc:
            raise VerifyInputError(
                f"--checkpoint {path}: not a JSON checkpoint, a note of the log of writers, a "
                f"writer's note or a tlog-proof: {exc}"
            ) from exc
        kept.append((str(path), data))
    return kept


def load_witness_policy(path: Path | None) -> WitnessPolicy | None:
    """The `--witness-policy FILE`: the JSON of RG_AUDIT_WITNESSES (the witnesses' keys and
    the quorum k; the urls are not used)."""
    if path is None:
        return None
    try:
        return WitnessPolicy.parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise VerifyInputError(f"--witness-policy {path}: not a readable file") from exc
    except (WitnessError, UnicodeDecodeError) as exc:
        raise VerifyInputError(f"--witness-policy {path}: {exc}") from None


async def verify_trail(args: argparse.Namespace, verifier: Verifier) -> Report:
    """Read the checkpoints, the log of writers, then the records, into `verifier`; its
    report."""
    settings = get_settings()
    config = consumer_config(settings, topics=[args.topic], max_poll_records=5000).to_aiokafka()
    progress_to = sys.stderr if args.progress or sys.stderr.isatty() else None

    def checkpoint(record: ConsumerRecord[bytes, bytes]) -> None:
        verifier.add_checkpoint(record.partition, record.offset, record.value, record.key)

    def audit_record(record: ConsumerRecord[bytes, bytes]) -> None:
        verifier.add_record(record.partition, record.offset, record.value, record.headers)

    # Checkpoints are few: always read whole, so --since windows still know what is covered.
    if not await read_topic(config, args.checkpoints_topic, checkpoint, required=False):
        verifier.no_checkpoints_topic()
        if not args.require_signed:
            logger.warning("no topic %s: the trail is unsigned", args.checkpoints_topic)
    # Witnesses' checkpoints after the topic's: trusted by the same rules, in the order given.
    for name, value in args.witness_checkpoints:
        verifier.add_witness_checkpoint(name, value)

    def writers_entry(record: ConsumerRecord[bytes, bytes]) -> None:
        verifier.add_writers_entry(record.partition, record.offset, record.value)

    # The log of writers, whole, when there is one (trails older than it have none); before
    # the audit topic: a head read then covers records acknowledged before it was written, so
    # they are below the audit topic's end offsets read next (a live trail is no rollback).
    await read_topic(config, args.writers_topic, writers_entry, required=False)
    await read_topic(config, args.topic, audit_record, since=args.since, progress_to=progress_to)
    return verifier.finish()


def _line(finding: Finding) -> str:
    where = f"{finding.topic}[{finding.partition}]@{finding.offset}"
    if finding.partition is None:
        where = finding.topic or "trail"
    who = ""
    if finding.writer is not None:
        seqs = (
            finding.seq
            if finding.last_seq in {None, finding.seq}
            else (f"{finding.seq}..{finding.last_seq}")
        )
        who = f" writer={finding.writer} seq={seqs}"
    return f"{finding.kind.upper():<13} {where}{who}: {finding.detail}"


def print_report(report: Report, args: argparse.Namespace, out: TextIO) -> None:
    """The report as text for people, or one JSON document with --json."""
    if args.json:
        document = {
            "topic": args.topic,
            "checkpoints_topic": args.checkpoints_topic,
            "writers_topic": args.writers_topic,
        }
        print(json.dumps({**document, **report.as_dict()}, indent=2), file=out)
        return
    for finding in report.problems:
        print(_line(finding), file=out)
    for finding in report.warnings:
        print("warning: " + _line(finding), file=out)
    if report.unknown_key_ids:
        # repr: key ids come off the topic, so no terminal escapes reach the operator raw.
        named = ", ".join(map(repr, sorted(report.unknown_key_ids)[:5]))
        more = len(report.unknown_key_ids) - 5
        print(
            f"hint: checkpoints name key id(s) {named}{f' and {more} more' if more > 0 else ''}"
            ": give their public keys with --public-key FILE (GET /audit/keys serves them)",
            file=out,
        )
    if report.receipts_checked:
        failed = sum(1 for f in report.problems if f.kind == "receipt")
        match = "all match" if not failed else f"{failed} do(es) not match"
        print(f"{report.receipts_checked} receipt(s) checked, {match}", file=out)
    if args.tsa_ca is not None:
        print(
            f"{report.timestamps_valid} of {report.timestamps_checked} timestamp token(s) valid",
            file=out,
        )
    verdict = "clean" if report.clean else f"{len(report.problems)} problem(s)"
    signed = "signed" if report.signed else "unsigned"
    print(
        f"{args.topic}: {report.records_checked} record(s) checked, {report.records_valid} "
        f"valid, {report.writers} writer(s), {report.checkpoints_valid} of "
        f"{report.checkpoints_checked} checkpoint(s) valid ({signed}): {verdict}",
        file=out,
    )


def verify_proofs(
    paths: list[Path], keys: dict[str, PublicKey], out: TextIO, *, as_json: bool
) -> int:
    """Check kept tlog-proofs offline (no broker): each against the public keys given."""
    if not keys:
        raise VerifyInputError(
            "--proof needs --public-key: the key the proofs' checkpoints are signed with"
        )
    public = [key.key for key in keys.values()]
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise VerifyInputError(f"--proof {path}: not a readable file") from exc
        try:
            proven = check_tlog_proof(data, public)
        except (NoteError, ProofError) as exc:
            results.append({"proof": str(path), "valid": False, "problem": str(exc)})
            continue
        results.append({"proof": str(path), "valid": True, **asdict(proven)})
    if as_json:
        json.dump({"proofs": results}, out, indent=2)
        out.write("\n")
    for result in [] if as_json else results:
        if result["valid"]:
            out.write(
                f"proof {result['proof']}: the record sha256:{result['digest']} is position "
                f"{result['seq']} of writer {result['writer']}, in its tree of "
                f"{result['size']} signed under {result['name']}\n"
            )
        else:
            out.write(f"proof {result['proof']}: NOT VALID: {result['problem']}\n")
    return EXIT_CLEAN if all(r["valid"] for r in results) else EXIT_PROBLEMS


def bundle_keys(data: bytes | None) -> dict[str, PublicKey]:
    """The keys of a bundle's keys.json (for --trust-bundle-keys), by key id."""
    try:
        entries = json.loads(data or b"")["keys"]
        keys: dict[str, PublicKey] = {}
        for entry in entries:
            key = load_pem_public_key(entry["public_key_pem"].encode("ascii"))
            if not isinstance(key, Ed25519PublicKey):
                raise TypeError("not an Ed25519 key")
            until = None if entry["until"] is None else parse_until(entry["until"])
            keys[entry["key_id"]] = PublicKey(entry["key_id"], key, current=False, until=until)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise VerifyInputError(f"--trust-bundle-keys: the bundle's {KEYS} cannot be read") from exc
    return keys


def verify_bundle(args: argparse.Namespace, out: TextIO) -> int:
    """Check an evidence bundle offline (docs/auditors.md): no broker, no network."""
    given = [
        option
        for option, value in (
            ("--since", args.since),
            ("--receipt", args.receipt),
            ("--checkpoint", args.checkpoint),
            ("--proof", args.proof),
            ("--topic", args.topic),
        )
        if value
    ]
    if given:
        raise VerifyInputError(f"--bundle reads no topic: {', '.join(given)} cannot go with it")
    try:
        bundle = read_bundle(args.bundle)
    except BundleFormatError as exc:
        raise VerifyInputError(str(exc)) from exc
    except OSError as exc:
        raise VerifyInputError(f"--bundle {args.bundle}: {exc.strerror or exc}") from exc
    keys = load_public_keys(args.public_key)
    manifest_key = None
    if args.manifest_key is not None:
        manifest_keys = load_public_keys([str(args.manifest_key)])
        manifest_key = next(iter(manifest_keys.values())).key
    if args.trust_bundle_keys:
        keys = {**bundle_keys(bundle.members.get(KEYS)), **keys}
    if not keys:
        raise VerifyInputError(
            "--bundle needs the keys you trust: --public-key FILE (or --trust-bundle-keys to "
            "take the bundle's own, which proves only that it is consistent with itself)"
        )
    checked = BundleCheck(keys, manifest_key=manifest_key, strict=args.strict).check(bundle)
    topics = checked.topics or {}
    args.topic = topics.get("audit")
    args.checkpoints_topic = topics.get("checkpoints")
    args.writers_topic = topics.get("writers")
    trusted = "bundle" if args.trust_bundle_keys else "given"
    if args.json:
        document = {
            "bundle": str(args.bundle),
            "trusted_keys": trusted,
            "topic": args.topic,
            "checkpoints_topic": args.checkpoints_topic,
            "writers_topic": args.writers_topic,
        }
        print(json.dumps({**document, **checked.report.as_dict()}, indent=2), file=out)
    else:
        if args.trust_bundle_keys:
            print(
                "warning: keys taken from the bundle itself: this shows the bundle is "
                "consistent, not who made it",
                file=out,
            )
        args.topic = f"bundle {args.bundle}"
        print_report(checked.report, args, out)
    return EXIT_CLEAN if checked.report.clean else EXIT_PROBLEMS


def verify_offline(args: argparse.Namespace) -> int:
    """`--bundle` or `--proof`: checked without a broker."""
    try:
        if args.bundle is not None:
            return verify_bundle(args, sys.stdout)
        keys = load_public_keys(args.public_key)
        return verify_proofs(args.proof, keys, sys.stdout, as_json=args.json)
    except VerifyInputError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE


def verify(args: argparse.Namespace) -> int:
    """`verify`: check the trail; exit 0 clean, 1 problems, 2 unusable input."""
    configure_logging("WARNING", "text")
    if args.bundle is not None or args.proof:
        return verify_offline(args)
    args.topic = args.topic or get_settings().audit_topic
    args.checkpoints_topic = args.checkpoints_topic or f"{args.topic}.checkpoints"
    args.writers_topic = args.writers_topic or f"{args.topic}.writers"
    try:
        keys = load_public_keys(args.public_key)
        # Keys given say the trail is signed: no checkpoint at all is then a problem.
        args.require_signed = args.require_signed or args.strict or bool(keys)
        args.witness_checkpoints = load_checkpoints(args.checkpoint)
        timestamps = None
        if args.tsa_ca is not None:
            try:
                roots = load_tsa_roots(args.tsa_ca)
            except ValueError as exc:
                raise VerifyInputError(f"--tsa-ca {exc}") from exc
            timestamps = TimestampCheck(roots, skew_s=args.tsa_skew)
        verifier = Verifier(
            keys,
            topic=args.topic,
            checkpoints_topic=args.checkpoints_topic,
            writers_topic=args.writers_topic,
            from_start=args.since is None,
            require_signed=args.require_signed,
            strict=args.strict,
            timestamps=timestamps,
            witnesses=load_witness_policy(args.witness_policy),
        )
        for name, receipt in load_receipts(args.receipt):
            verifier.expect_receipt(name, receipt)
        report = asyncio.run(verify_trail(args, verifier))
    except VerifyInputError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    except KafkaError as exc:
        logger.error("cannot read the trail: %s", exc)
        return EXIT_USAGE
    print_report(report, args, sys.stdout)
    return EXIT_CLEAN if report.clean else EXIT_PROBLEMS
