"""Go's golang.org/x/mod/sumdb (tlog, note), a transparency-log implementation this project did
not write, as a checker of our trees, proofs and notes: `tests/tools/tlogcheck` is built once
with the machine's Go (modules from the Go module proxy, pinned by its go.sum) and driven over
stdin/stdout, one JSON line per request."""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "tools" / "tlogcheck"
BINARY = ROOT / ".cache" / "tools" / "bin" / "tlogcheck"


def go() -> str:
    """The machine's Go (PATH, else where its official archive installs it)."""
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if found is None:
        raise RuntimeError(
            "Go is needed to build tests/tools/tlogcheck: install Go (see docs/development.md)"
        )
    return found


def build() -> Path:
    """Build the checker (go build is a no-op when nothing changed) and return its path."""
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go(), "build", "-o", str(BINARY), "."],
        cwd=SOURCE,
        check=True,
        timeout=600,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return BINARY


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


class TlogCheck:
    """One running checker; `ask` sends a request and returns its answer."""

    def __init__(self, binary: Path) -> None:
        self._process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        encoded = {
            key: (
                _b64(value)
                if isinstance(value, bytes)
                else [_b64(v) if isinstance(v, bytes) else v for v in value]
                if isinstance(value, list)
                else value
            )
            for key, value in request.items()
        }
        self._process.stdin.write(json.dumps(encoded) + "\n")
        self._process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._process.stdout.readline())
        return answer

    def roots(self, entries: list[bytes]) -> list[bytes]:
        """The root of every prefix of `entries` (sizes 0..len), as tlog.TreeHash computes it."""
        answer = self.ask({"op": "roots", "leaves": entries})
        assert answer["ok"], answer
        return [base64.b64decode(r) for r in answer["roots"]]

    def inclusion(
        self, index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
    ) -> str | None:
        """None when tlog.CheckRecord accepts the proof, else its error."""
        answer = self.ask(
            {
                "op": "inclusion",
                "index": index,
                "size": size,
                "leaf": leaf,
                "proof": proof,
                "root": root,
            }
        )
        return None if answer["ok"] else str(answer["error"])

    def consistency(
        self, old: int, size: int, old_root: bytes, root: bytes, proof: list[bytes]
    ) -> str | None:
        """None when tlog.CheckTree accepts the proof, else its error."""
        answer = self.ask(
            {
                "op": "consistency",
                "old": old,
                "size": size,
                "old_root": old_root,
                "root": root,
                "proof": proof,
            }
        )
        return None if answer["ok"] else str(answer["error"])

    def open_note(self, note: bytes, keys: list[str]) -> tuple[str, list[str]] | str:
        """(text, signer names) when sumdb/note's Open accepts `note` with verifier `keys`,
        else its error."""
        answer = self.ask({"op": "open", "note": note, "keys": keys})
        if not answer["ok"]:
            return str(answer["error"])
        return str(answer["text"]), list(answer.get("signed") or [])

    def checkpoint(self, note: bytes, origin: str, keys: list[str]) -> tuple[int, bytes] | str:
        """(size, root) when formats/log's ParseCheckpoint accepts `note` of `origin` (first
        key the log's), else its error."""
        answer = self.ask({"op": "checkpoint", "note": note, "origin": origin, "keys": keys})
        if not answer["ok"]:
            return str(answer["error"])
        return int(answer.get("size") or 0), base64.b64decode(answer["root"])

    def tlog_proof(self, proof: bytes, origin: str, keys: list[str], leaf: bytes) -> str | None:
        """None when formats/proof reads `proof`, formats/log opens its checkpoint and
        sumdb/tlog checks `leaf` at its index, else the error."""
        answer = self.ask(
            {"op": "tlogproof", "note": proof, "origin": origin, "keys": keys, "leaf": leaf}
        )
        return None if answer["ok"] else str(answer["error"])

    def sign(self, text: str, signer_keys: list[str]) -> bytes:
        """`text` signed by sumdb/note with each `PRIVATE+KEY+...` signer key."""
        answer = self.ask({"op": "sign", "text": text, "keys": signer_keys})
        assert answer["ok"], answer
        return str(answer["text"]).encode()

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()
