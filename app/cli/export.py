"""`export`: an evidence bundle (app/integrity/bundle.py, docs/auditors.md) of the records of a
window, one user's or everyone's, read from the topics directly (no service needed).

The proofs are computed here: the audit topic is read whole into a proof index
(app/integrity/proofs.py) in a temporary folder, as the service's proof index reads it, because
a writer's tree needs every position of the writer, not only the window's. The checkpoints topic
and the log of writers go into the bundle whole. With RG_ERASURE=on the records stay as stored
(sealed: the proofs are over them) and `opened.ndjson` shows their sealed fields opened, or the
marker naming the erasure record of an erased subject (`--sealed`: not). Exit 0 when the bundle
is written, 2 with one line saying why not. The work is in app/cli/evidence.py, imported when
the command runs.
"""

import argparse
from pathlib import Path
from typing import Any

from app.cli.common import EPILOG
from app.cli.integrity import rfc3339


def cmd_export(args: argparse.Namespace) -> int:
    """Write the bundle; exit 0, or 2 with one line naming the problem."""
    from app.cli.evidence import export  # noqa: PLC0415 - a cheap parser

    return export(args)


class _Moment(argparse.Action):
    """--since/--until: the UTC time, and the text as given (kept in the manifest)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        try:
            moment = rfc3339(str(values))
        except argparse.ArgumentTypeError as exc:
            parser.error(f"{option_string}: {exc}")
        setattr(namespace, self.dest, moment)
        setattr(namespace, f"{self.dest}_text", str(values))


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `export`."""
    export = commands.add_parser(
        "export",
        help="write an evidence bundle: a window's records with proofs, checked offline",
        description="Read the audit topic, its checkpoints topic and the log of writers and "
        "write one ZIP file (docs/auditors.md): the records of the window (one user's with "
        "--user), every checkpoint and writers entry, an inclusion proof per record, the "
        "public keys and a signed manifest. `verify --bundle FILE` checks it with no broker.",
        epilog=EPILOG,
    )
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="the bundle")
    export.add_argument("--user", help="only this user_id's records (the records' Kafka key)")
    export.add_argument(
        "--since", action=_Moment, metavar="TIME", help="records from TIME (RFC 3339), inclusive"
    )
    export.add_argument(
        "--until", action=_Moment, metavar="TIME", help="records before TIME (RFC 3339)"
    )
    export.add_argument("--topic", help="audit topic (default RG_AUDIT_TOPIC)")
    export.add_argument(
        "--checkpoints-topic", metavar="TOPIC", help="checkpoints topic (default TOPIC.checkpoints)"
    )
    export.add_argument(
        "--writers-topic", metavar="TOPIC", help="the log of writers (default TOPIC.writers)"
    )
    export.add_argument(
        "--signing-key",
        type=Path,
        metavar="FILE",
        help="Ed25519 private key (PEM) to sign the manifest with (default: the service's, "
        "RG_AUDIT_SIGNING_KEY_FILE)",
    )
    export.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="FILE[@UNTIL]",
        help="a public key checkpoints are signed with, besides the service's own and "
        "RG_AUDIT_RETIRED_KEYS_DIR's; repeatable",
    )
    export.add_argument(
        "--sealed",
        action="store_true",
        help="with RG_ERASURE=on, leave out opened.ndjson (the sealed fields opened): the "
        "bundle then holds no personal data in the clear",
    )
    export.add_argument(
        "--progress", action="store_true", help="progress bar on stderr even when not a TTY"
    )
    export.set_defaults(func=cmd_export, since=None, until=None, since_text=None, until_text=None)
