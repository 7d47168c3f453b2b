"""`verify`: check an audit trail's hash chains, signed checkpoints and kept receipts.

The command reads the audit topic and its checkpoints topic up to their end offsets at start
(records written meanwhile are left for the next run) with a group-less consumer, feeds them to
`app.integrity.verifier.Verifier` and prints its report. Exit codes: 0 clean (warnings allowed),
1 problems found, 2 usage errors or a trail that cannot be read (bad files, unknown topic).
The work is in app/cli/verification.py, imported when the command runs.
"""

import argparse
from datetime import UTC, datetime
from pathlib import Path

from app.cli.common import EPILOG
from app.integrity.report import DEFAULT_SKEW_S


def rfc3339(text: str) -> datetime:
    """An argparse type: an RFC 3339 time with its offset (`2026-09-21T12:00:00Z`)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time's offset (Z or +hh:mm): {text!r}")
    return moment.astimezone(UTC)


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from exc
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify the trail; exit 0 clean, 1 problems, 2 unusable input."""
    from app.cli.verification import verify  # noqa: PLC0415 - a cheap parser

    return verify(args)


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
        help="what a witness kept, checked even when the checkpoints topic was emptied; "
        "repeatable. A JSON checkpoint (GET /audit/checkpoint): as if on the checkpoints topic. "
        "A note of the log of writers (?log=writers): against the writers topic. A writer's "
        "note (?log=WRITER) or a tlog-proof (GET /audit/proof, its inclusion checked too): a "
        "tree head of size N of that writer, opened with --public-key under the key name of "
        "its origin (else bad_signature); the root of the writer's positions 0..N-1 (records, "
        "and voids of trusted checkpoints) must be its root (else conflict), the trail must "
        "reach size N (else rollback), a position below N without a record or void is "
        "truncated, and records below N are covered (--strict). A file in none of these forms "
        "exits 2",
    )
    verify.add_argument(
        "--witness-policy",
        type=Path,
        metavar="FILE",
        help='the witnesses to require, as RG_AUDIT_WITNESSES: {"k": K, "witnesses": [{"url": '
        '..., "key": "<verifier key>"}]}; a signed note of the log of writers without K valid '
        "cosignatures by them (its own, or a later note's that the writers topic shows extends "
        "it) is a problem: uncosigned",
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
        "--tsa-ca",
        type=Path,
        metavar="FILE",
        help="the timestamp authorities' CA certificates (PEM): every timestamp token on the "
        "checkpoints topic is checked (chain to FILE, timeStamping key usage, imprint = the note "
        "of the log of writers it names, nonce): bad_timestamp; the note's time against the "
        "token's genTime: backdated",
    )
    verify.add_argument(
        "--tsa-skew",
        type=_seconds,
        default=DEFAULT_SKEW_S,
        metavar="SECONDS",
        help=f"how far a note's time and its token's genTime may differ (default "
        f"{DEFAULT_SKEW_S:g}: a request of at most 5 s, the authority's accuracy, clocks kept "
        "by NTP)",
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
