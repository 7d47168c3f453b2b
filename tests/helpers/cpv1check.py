"""A reader of v1 checkpoints written in Go from docs/integrity.md alone, with Go's standard
library (its JSON tokenizer, strict base64url, crypto/ed25519): `tests/tools/cpv1check`, built
once with the machine's Go (no modules to fetch) and driven over stdin/stdout, one JSON line per
request. It tells whether the docs say enough for another reader to agree with ours."""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers.tlog import go

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "tools" / "cpv1check"
BINARY = ROOT / ".cache" / "tools" / "bin" / "cpv1check"


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


class CheckpointReader:
    """One running reader; `read` asks it about one record of the checkpoints topic."""

    def __init__(self, binary: Path) -> None:
        self._process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def read(self, value: bytes, key: str, public_key: bytes) -> dict[str, Any]:
        """`{"ok": True, "signed": ...}` when Go takes the checkpoint and its signature verifies
        with `public_key` (32 raw bytes), else `{"ok": False, "error": ...}`."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        request = {"value": value.decode(), "key": key, "public_key": public_key.hex()}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._process.stdout.readline())
        return answer

    def close(self) -> None:
        """Stop the process."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()
