"""`verify`: check an audit trail's hash chains, signed checkpoints and kept receipts.

The command reads the audit topic and its checkpoints topic up to their end offsets at start
(records written meanwhile are left for the next run) with a group-less consumer, feeds them to
`app.integrity.verifier.Verifier` and prints its report. Exit codes: 0 clean (warnings allowed),
1 problems found, 2 usage errors or a trail that cannot be read (bad files, unknown topic).
"""

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.cli.common import EPILOG, logger
from app.connection import consumer_config
from app.integrity.bundle import KEYS, BundleFormatError, read_bundle
from app.integrity.bundle_check import BundleCheck
from app.integrity.keys import PublicKey, derived_key_id, parse_until
from app.integrity.merkle import ProofError
from app.integrity.note import NoteError
from app.integrity.proofs import check_tlog_proof
from app.integrity.report import Finding, Report
from app.integrity.verifier import Verifier
from app.logs import configure_logging
from app.settings import get_settings

EXIT_CLEAN, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


class VerifyInputError(Exception):
    """A file or topic `verify` was pointed at cannot be used (exit 2)."""


def load_public_keys(specs: list[str]) -> dict[str, PublicKey]:
    """Ed25519 public keys (PEM) by key id, from `FILE` or `FILE@UNTIL` (UNTIL: the RFC 3339
    time the key was retired; checkpoints it signs dated later are not trusted). The id is the
    spec's derivation, and also the file's name when it is `<key_id>.pub.pem` or `<key_id>.pem`."""
    keys: dict[str, PublicKey] = {}
    for spec in specs:
        path, until = Path(spec), None
        head, at, tail = spec.rpartition("@")
        if at and not path.exists():
            try:
                path, until = Path(head), parse_until(tail)
            except ValueError as exc:
                raise VerifyInputError(
                    f"--public-key {spec}: after @, the time the key was retired (RFC 3339 with "
                    "its offset, e.g. 2026-06-30T00:00:00Z)"
                ) from exc
        try:
            key = load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise VerifyInputError(f"--public-key {path}: not a readable PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise VerifyInputError(f"--public-key {path}: not an Ed25519 public key")
        ids = {derived_key_id(key)}
        name = path.name
        for suffix in (".pub.pem", ".pem"):
            if name.endswith(suffix) and len(name) > len(suffix):
                ids.add(name.removesuffix(suffix))
                break
        for key_id in ids:
            keys[key_id] = PublicKey(key_id, key, current=until is None, until=until)
    return keys


def load_receipts(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    """The receipts of each file (one JSON object, or a list of them), named `file[#i]`."""
    receipts: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise VerifyInputError(f"--receipt {path}: not a readable JSON file") from exc
        items = data if isinstance(data, list) else [data]
        if not items or not all(isinstance(item, dict) for item in items):
            raise VerifyInputError(f"--receipt {path}: expected a receipt object or a list")
        for i, item in enumerate(items):
            receipts.append((str(path) if len(items) == 1 else f"{path}#{i}", item))
    return receipts


def load_checkpoints(paths: list[Path]) -> list[tuple[str, bytes]]:
    """The bytes of each `--checkpoint FILE` (a checkpoint a witness kept), named by its path;
    what they hold is checked like a record of the checkpoints topic."""
    kept: list[tuple[str, bytes]] = []
    for path in paths:
        try:
            kept.append((str(path), path.read_bytes()))
        except OSError as exc:
            raise VerifyInputError(f"--checkpoint {path}: not a readable file") from exc
    return kept


def rfc3339(text: str) -> datetime:
    """An argparse type: an RFC 3339 time with its offset (`2026-09-21T12:00:00Z`)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time's offset (Z or +hh:mm): {text!r}")
    return moment.astimezone(UTC)


class Progress:
    """A one-line progress bar on stderr, redrawn at most five times a second."""

    def __init__(self, out: TextIO | None, total: int, label: str = "verify") -> None:
        self._out, self._total, self._done = out, max(total, 1), 0
        self._label = label
        self._started = self._drawn = time.monotonic()

    def advance(self, count: int) -> None:
        """Count `count` more records read."""
        self._done += count
        now = time.monotonic()
        if self._out is not None and now - self._drawn >= 0.2:
            self._drawn = now
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self._out is not None:
            self._draw(time.monotonic())
            print(file=self._out, flush=True)

    def _draw(self, now: float) -> None:
        share = min(self._done / self._total, 1.0)
        bar = "#" * int(share * 30)
        rate = self._done / max(now - self._started, 1e-9)
        line = f"\r{self._label} [{bar:<30}] {self._done:,}/{self._total:,} records {rate:,.0f}/s"
        print(line, end="", file=self._out, flush=True)


async def read_topic(
    config: dict[str, Any],
    topic: str,
    on_record: Callable[[ConsumerRecord[bytes, bytes]], None],
    *,
    since: datetime | None = None,
    progress_to: TextIO | None = None,
    required: bool = True,
    label: str = "verify",
) -> bool:
    """Feed every record of `topic` up to its end offsets at start (from `since`, else the
    oldest kept) to `on_record`; False when the topic does not exist and is not `required`."""
    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(**config)
    try:
        # Inside the try: a start that fails (Kafka unreachable) leaves a consumer to close too.
        await consumer.start()
        if topic not in await consumer.topics():
            if required:
                raise VerifyInputError(f"topic {topic!r} does not exist")
            return False
        # The partitions of a topic not subscribed to: aiokafka has no public form of this.
        ids: set[int] = await consumer._client._wait_on_metadata(topic)
        partitions = [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        if since is not None:
            found = await consumer.offsets_for_times(
                dict.fromkeys(partitions, int(since.timestamp() * 1000))
            )
            starts = {tp: ends[tp] if at is None else at.offset for tp, at in found.items()}
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        pending = {tp for tp in partitions if starts[tp] < ends[tp]}
        progress = Progress(progress_to, sum(ends[tp] - starts[tp] for tp in pending), label)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        on_record(record)
                progress.advance(len(records))
            for tp in list(pending):
                # The position, not the last record: transaction markers hold offsets too.
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        progress.close()
        return True
    finally:
        await consumer.stop()


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
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeError) as exc:
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


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify the trail; exit 0 clean, 1 problems, 2 unusable input."""
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
        verifier = Verifier(
            keys,
            topic=args.topic,
            checkpoints_topic=args.checkpoints_topic,
            writers_topic=args.writers_topic,
            from_start=args.since is None,
            require_signed=args.require_signed,
            strict=args.strict,
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


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `verify`."""
    verify = commands.add_parser(
        "verify",
        help="check an audit trail: hash chains, signed checkpoints, receipts",
        description="Read the audit topic and its checkpoints topic up to their current end "
        "and report every record that was altered, forged, missing, truncated, in conflict or "
        "duplicated, every checkpoint whose signature does not verify, and every kept receipt "
        "the trail does not bear out. Exit 0 clean (warnings allowed), 1 problems, 2 usage.",
        epilog=EPILOG,
    )
    verify.add_argument("--topic", help="audit topic (default RG_AUDIT_TOPIC)")
    verify.add_argument(
        "--checkpoints-topic", metavar="TOPIC", help="checkpoints topic (default TOPIC.checkpoints)"
    )
    verify.add_argument(
        "--writers-topic",
        metavar="TOPIC",
        help="the log of writers (default TOPIC.writers; read when it exists): a writer it "
        "knows whose records are gone is writer_missing, one cut back a rollback",
    )
    window = verify.add_mutually_exclusive_group()
    window.add_argument(
        "--from-beginning",
        action="store_true",
        help="check every record kept, each writer's chain from seq 0 (the default)",
    )
    window.add_argument(
        "--since",
        type=rfc3339,
        metavar="TIME",
        help="check records from TIME (RFC 3339); each writer's chain starts where read",
    )
    verify.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="FILE[@UNTIL]",
        help="Ed25519 public key (PEM) that checkpoints may be signed with; @UNTIL (RFC 3339): "
        "a retired key, not trusted for checkpoints dated later; repeatable. With a key, a trail "
        "without checkpoints is a problem",
    )
    verify.add_argument(
        "--require-signed",
        action="store_true",
        help="a trail without a trusted checkpoint (or without its checkpoints topic) is a "
        "problem, not a warning (implied by --public-key)",
    )
    verify.add_argument(
        "--strict",
        action="store_true",
        help="records after a writer's last trusted checkpoint (not_covered: unproven, anyone "
        "who may write the topic could have appended them) are a problem, not a warning; "
        "implies --require-signed",
    )
    verify.add_argument(
        "--checkpoint",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="a checkpoint a witness kept (the JSON of GET /audit/checkpoint), checked as if "
        "it were on the checkpoints topic: a cut tail or an emptied checkpoints topic is still "
        "found; or a note of the log of writers (GET /audit/checkpoint?log=writers), checked "
        "against the writers topic; repeatable",
    )
    verify.add_argument(
        "--receipt",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="a receipt a client kept (JSON object or list) to check; repeatable",
    )
    verify.add_argument(
        "--proof",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="a kept inclusion proof (the tlog-proof of GET /audit/proof) to check offline with "
        "--public-key, reading no topic: which record it proves, at which position of which "
        "writer, in which signed tree; repeatable",
    )
    verify.add_argument(
        "--bundle",
        type=Path,
        metavar="FILE",
        help="an evidence bundle (`export`) to check offline, reading no topic: its signed "
        "manifest, each record's digest, headers and inclusion proof against checkpoints "
        "signed with a --public-key (docs/auditors.md)",
    )
    verify.add_argument(
        "--manifest-key",
        type=Path,
        metavar="FILE",
        help="with --bundle: the public key (PEM) of an exporter's own --signing-key, trusted "
        "for the bundle's manifest only",
    )
    verify.add_argument(
        "--trust-bundle-keys",
        action="store_true",
        help="with --bundle: trust the keys the bundle carries (it then shows only that the "
        "bundle is consistent with itself: anyone can make one with their own key)",
    )
    verify.add_argument("--json", action="store_true", help="one JSON document on stdout")
    verify.add_argument(
        "--progress", action="store_true", help="progress bar on stderr even when not a TTY"
    )
    verify.set_defaults(func=cmd_verify)
