"""A reader of evidence bundles written in Go with its standard library only (archive/zip,
crypto/sha256, crypto/ed25519): `tests/tools/zipcheck`, built once with the machine's Go (no
modules to fetch). It tells whether a reader in another language takes a bundle's container,
members and manifest signature as docs/auditors.md describes them."""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers.tlog import go

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "tools" / "zipcheck"
BINARY = ROOT / ".cache" / "tools" / "bin" / "zipcheck"


def build() -> Path:
    """Build the reader (go build is a no-op when nothing changed) and return its path."""
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go(), "build", "-o", str(BINARY), "."],
        cwd=SOURCE,
        check=True,
        timeout=600,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return BINARY


def read(bundle: Path, public_key: Path) -> tuple[int, dict[str, Any]]:
    """Go's exit status and answer: every member's name, SHA-256 and size, and whether the
    manifest's signature verifies with `public_key` (PEM); or the error reading a member."""
    done = subprocess.run(
        [str(build()), str(bundle), str(public_key)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, answer
