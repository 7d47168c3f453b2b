"""`keys generate`: a key pair for signing checkpoints of the audit chain."""

import argparse
import re
import sys
from pathlib import Path

from app.cli.common import EPILOG

KEY_ID = re.compile(r"^[A-Za-z0-9._-]+$")

HOW_TO_USE = """\
Then run the service with RG_AUDIT_SIGNING_KEY_FILE=DIR/<id>.key.pem (and RG_AUDIT_KEY_ID=<id>
when you chose the id). Keep the private key on the service's host only; give the public key
to whoever verifies the trail (the verifier key is the same key in C2SP note form, under the
key name RG_AUDIT_LOG_ORIGIN: what transparency-log tools open the checkpoints' notes with).
To rotate: generate a new pair, copy the old <id>.pub.pem to
RG_AUDIT_RETIRED_KEYS_DIR as <id>.pem, write the time of the restart (RFC 3339, e.g.
2026-06-30T00:00:00Z) to <id>.until beside it, and restart with the new key.

"""


def cmd_generate(args: argparse.Namespace) -> int:
    """Write `<id>.key.pem` (mode 0600) and `<id>.pub.pem` to --out; print the id."""
    from app.integrity.keys import generate, load_public_key  # noqa: PLC0415 - a cheap parser
    from app.integrity.note import verifier_key  # noqa: PLC0415
    from app.settings import get_settings  # noqa: PLC0415

    if args.key_id is not None and not KEY_ID.fullmatch(args.key_id):
        print(f"--key-id {args.key_id!r}: letters, digits, '.', '_' and '-' only", file=sys.stderr)
        return 2
    try:
        key_id, private, public = generate(args.out, args.key_id)
    except FileExistsError as exc:
        print(f"{exc.filename} exists already: a key is never overwritten", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot write to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    origin = get_settings().log_origin
    print(f"key id:       {key_id}")
    print(f"private key:  {private} (mode 0600)")
    print(f"public key:   {public}")
    print(f"verifier key: {verifier_key(origin, load_public_key(public))}")
    return 0


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `keys generate`."""
    keys = commands.add_parser(
        "keys",
        help="generate an Ed25519 key pair that signs checkpoints of the audit chain",
        description="Keys that sign the audit chain's checkpoints (RG_AUDIT_SIGNING_KEY_FILE).",
        epilog=EPILOG,
    )
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    generate_cmd = actions.add_parser(
        "generate",
        help="write <id>.key.pem (private, mode 0600) and <id>.pub.pem to a folder",
        description="Write a new Ed25519 key pair: DIR/<id>.key.pem, the private key (PKCS#8 "
        "PEM, unencrypted, mode 0600), and DIR/<id>.pub.pem, its public key. An existing file "
        "is never overwritten.",
        epilog=HOW_TO_USE + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate_cmd.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder to write to (created)"
    )
    generate_cmd.add_argument(
        "--key-id",
        metavar="ID",
        help="the key's id (default: the first 16 hex digits of SHA-256 of the public key)",
    )
    generate_cmd.set_defaults(func=cmd_generate)
