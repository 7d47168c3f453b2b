"""A real C2SP witness for the tests, and a reader of cosigned checkpoints: `litewitness` and
`witnessctl` of filippo.io/torchwood v0.6.1, a witness this project did not write, built once
with the machine's Go from the module proxy (pinned by `tests/tools/witness/go.mod` and its
go.sum) into the tool cache.

`Litewitness.start(folder, log_origin, log_key)` gives it an Ed25519 key of its own in an
ssh-agent of its own (litewitness signs only through an agent), registers our log's origin and
verifier key in its SQLite database (`witnessctl add-log` / `add-key`), starts it on a free
loopback port and reads its verifier key from the line it logs at start. `stop()`, `start()`
again (same port, same database), `snapshot()` (a consistent copy of the database) and
`restore(copy)` (restart from that copy: a witness brought back from an old backup).

`CosigCheck` (tests/tools/cosigcheck, transparency-dev/formats) opens a checkpoint note with our
log's key and names the witnesses whose cosignatures verify.
"""

import base64
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app.embedded import free_port
from app.integrity.merkle import MerkleTree
from app.integrity.witness import Answer, WitnessKey, add_checkpoint_body, interpret
from tests.helpers.tlog import go

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "tools" / "witness"
BIN = ROOT / ".cache" / "tools" / "bin"
LITEWITNESS = BIN / "litewitness"
WITNESSCTL = BIN / "witnessctl"
_VKEY = re.compile(r'msg="verifier key" vkey=(\S+)')


def build() -> Path:
    """Build litewitness and witnessctl (a no-op when nothing changed); their folder."""
    BIN.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            go(),
            "build",
            "-o",
            f"{BIN}{os.sep}",
            "filippo.io/torchwood/cmd/litewitness",
            "filippo.io/torchwood/cmd/witnessctl",
        ],
        cwd=SOURCE,
        check=True,
        timeout=900,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return BIN


class Litewitness:
    """One litewitness with its own key, agent and database in `folder`."""

    def __init__(self, folder: Path, *, name: str) -> None:
        self.folder = folder
        self.name = name
        self.db = folder / "witness.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.vkey = ""
        self.log_lines: list[str] = []
        self._agent: subprocess.Popen[bytes] | None = None
        self._process: subprocess.Popen[str] | None = None
        self._reader = threading.Thread()

    @classmethod
    def create(cls, folder: Path, *, name: str, log_origin: str, log_key: str) -> "Litewitness":
        """A new witness that trusts `log_key` (verifier-key text) for `log_origin`, started."""
        folder.mkdir(parents=True, exist_ok=True)
        witness = cls(folder, name=name)
        witness._start_agent()
        witness.ctl("add-log", "-origin", log_origin)
        witness.ctl("add-key", "-origin", log_origin, "-key", log_key)
        witness.start()
        return witness

    @property
    def socket(self) -> Path:
        """The ssh-agent's socket."""
        return self.folder / "agent.sock"

    def _start_agent(self) -> None:
        key = self.folder / "witness-key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(key)],
            check=True,
            timeout=30,
        )
        # -D: in the foreground, so this process owns it and ends it by its pid.
        self._agent = subprocess.Popen(
            ["ssh-agent", "-D", "-a", str(self.socket)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert time.monotonic() < deadline, "ssh-agent did not open its socket"
            time.sleep(0.02)
        subprocess.run(
            ["ssh-add", "-q", str(key)],
            check=True,
            timeout=30,
            env={**os.environ, "SSH_AUTH_SOCK": str(self.socket)},
            stderr=subprocess.DEVNULL,
        )
        fingerprint = subprocess.run(
            ["ssh-keygen", "-lf", f"{key}.pub"], check=True, capture_output=True, text=True
        ).stdout.split()[1]
        self._fingerprint = fingerprint

    def ctl(self, *args: str) -> str:
        """Run `witnessctl <command> -db <db> <args>`; its output."""
        done = subprocess.run(
            [str(WITNESSCTL), args[0], "-db", str(self.db), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout + done.stderr

    def start(self, timeout_s: float = 30) -> None:
        """Start litewitness on its port; returns once it listens (its verifier key read)."""
        assert self._process is None, "already running"
        process = self._process = subprocess.Popen(
            [
                str(LITEWITNESS),
                "-db",
                str(self.db),
                "-key",
                self._fingerprint,
                "-name",
                self.name,
                "-ssh-agent",
                str(self.socket),
                "-listen",
                f"127.0.0.1:{self.port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        listening = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.log_lines.append(line.rstrip("\n"))
                found = _VKEY.search(line)
                if found:
                    self.vkey = found.group(1)
                if "msg=listening" in line:
                    listening.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not listening.wait(timeout_s):
            self.stop()
            raise AssertionError(f"litewitness did not start: {self.log_lines}")
        assert self.vkey, self.log_lines

    def stop(self) -> None:
        """Stop litewitness (the agent and the database stay)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    @property
    def running(self) -> bool:
        """True while litewitness runs."""
        return self._process is not None and self._process.poll() is None

    def snapshot(self, target: Path) -> Path:
        """A consistent copy of the witness's database at `target` (SQLite's backup)."""
        source = sqlite3.connect(self.db)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        return target

    def restore(self, copy: Path) -> None:
        """Stop, put the database `copy` in place, start again: the witness forgets what it
        saw after the copy was taken."""
        self.stop()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(copy, self.db)
        self.start()

    def close(self) -> None:
        """Stop litewitness and its agent."""
        self.stop()
        agent, self._agent = self._agent, None
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=10)


# A test's maker of witnesses: (witness name, our log's origin, our log's verifier key).
MakeWitness = Callable[[str, str, str], Litewitness]


COSIGCHECK_SOURCE = ROOT / "tests" / "tools" / "cosigcheck"
COSIGCHECK = BIN / "cosigcheck"


def build_cosigcheck() -> Path:
    """Build the checker of cosigned checkpoints (transparency-dev/formats); its path."""
    BIN.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go(), "build", "-o", str(COSIGCHECK), "."],
        cwd=COSIGCHECK_SOURCE,
        check=True,
        timeout=600,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return COSIGCHECK


class CosigCheck:
    """transparency-dev/formats' log.ParseCheckpoint behind a pipe: it opens a checkpoint note
    with our log's key and says which witnesses' cosignatures (tlog-cosignature) verify."""

    def __init__(self, binary: Path) -> None:
        self._process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def open(
        self, note: bytes, origin: str, log_key: str, witness_keys: list[str]
    ) -> dict[str, Any]:
        """`{"ok": True, "size", "root", "cosigned_by": [names]}` or `{"ok": False, "error"}`."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        request = {
            "note": base64.b64encode(note).decode(),
            "origin": origin,
            "log_key": log_key,
            "witness_keys": witness_keys,
        }
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._process.stdout.readline())
        return answer

    def close(self) -> None:
        """End the checker."""
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()


def submit(
    url: str,
    old: int,
    proof: list[bytes],
    note: str,
    *,
    key: WitnessKey,
    text: str,
    client: httpx.Client | None = None,
) -> Answer:
    """POST one add-checkpoint to the witness at `url` (through `client`, for many: making
    a client costs more than a request); what its answer means."""
    body = add_checkpoint_body(old, proof, note)
    if client is None:
        answer = httpx.post(f"{url}/add-checkpoint", content=body, timeout=10)
    else:
        answer = client.post(f"{url}/add-checkpoint", content=body, timeout=10)
    return interpret(
        answer.status_code,
        answer.headers.get("content-type", ""),
        answer.content,
        key=key,
        text=text,
        old=old,
    )


def rewritten(entries: list[bytes], cosigned: int, rng: random.Random) -> MerkleTree:
    """A history rewritten after a witness cosigned its first `cosigned` entries: one of those
    changed (sometimes the next one dropped and an entry added), then 0 to 39 more entries; the
    same or a larger size than `cosigned`, another root at every size from the change on."""
    kept = list(entries[:cosigned])
    changed = rng.randrange(cosigned)
    kept[changed] = b"rewritten " + rng.randbytes(8)
    if rng.random() < 0.3 and changed + 1 < len(kept):
        del kept[changed + 1]
        kept.append(b"filler " + rng.randbytes(4))
    kept += [b"later " + rng.randbytes(4) for _ in range(rng.randrange(0, 40))]
    tree = MerkleTree()
    for entry in kept:
        tree.append(entry)
    return tree
