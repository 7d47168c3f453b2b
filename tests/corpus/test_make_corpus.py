"""The corpus of bundle scenarios (tests/corpus/make_corpus.py), made from an export of a real
service run on the session broker: each scenario gives the findings it was made for, and the
console script (another process, reading the corpus's own arguments) gives the very report the
corpus holds."""

import asyncio
import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.corpus.make_corpus import SCENARIOS, normalized
from tests.helpers.bundles import PER_USER, USERS, pem_files, service_run, trail_env
from tests.helpers.processes import run_cli

ROOT = Path(__file__).resolve().parents[2]

# Per scenario: the exit code, and the kinds of its problems and warnings (with counts).
EXPECTED: dict[str, tuple[int, dict[str, int], dict[str, int]]] = {
    "clean": (0, {}, {}),
    "clean-strict": (0, {}, {}),
    "trust-bundle-keys": (0, {}, {}),
    "altered-member": (1, {"altered": 1}, {}),
    "dropped-record": (1, {"altered": 1}, {}),
    "altered-value": (1, {"altered": 1}, {}),
    "reordered": (0, {}, {}),
    "duplicate": (1, {"duplicate": 1}, {}),
    "conflict": (1, {"conflict": 1, "bad_proof": 1}, {}),
    "forged-link": (1, {"forged": 1}, {}),
    "forged-headers": (1, {"forged": 1}, {}),
    "header-twice": (1, {"forged": 1}, {}),
    "proof-removed": (1, {"bad_proof": 1}, {}),
    "not-covered": (0, {}, {"not_covered": 1}),
    "not-covered-strict": (1, {"not_covered": 1}, {}),
    "flipped-proof-bit": (1, {"bad_proof": 1}, {}),
    "missing-member": (1, {"missing": 1, "forged": 1, "bad_proof": len(USERS) * PER_USER}, {}),
    "member-twice": (1, {"forged": 1}, {}),
    "manifest-other-key": (1, {"bad_signature": 1}, {}),
    "manifest-not-json": (1, {"forged": 1}, {}),
    "fork": (1, {"fork": 1}, {}),
    "key-mismatch": (1, {"key_mismatch": 1}, {}),
    "malformed-checkpoint": (1, {"malformed_checkpoint": 1}, {}),
    "writers-hole": (1, {"rollback": 1}, {}),
    "bad-line": (1, {"forged": 1}, {}),
    "bad-crc": (1, {"altered": 1}, {}),
    "erased-subject": (0, {}, {}),
}


@pytest.fixture(scope="module")
def corpus(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    topic = f"test-{uuid.uuid4().hex}"
    _, private, _ = pem_files(folder)
    asyncio.run(service_run(kafka_bootstrap, topic, private))
    bundle = folder / "all.zip"
    done = run_cli(
        ["export", "--out", str(bundle)], cwd=folder, env=trail_env(kafka_bootstrap, topic, private)
    )
    assert done.returncode == 0, done.stderr
    out = folder / "corpus"
    made = subprocess.run(
        [sys.executable, "-m", "tests.corpus.make_corpus", str(bundle), str(private), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return out


def scenarios(corpus: Path) -> dict[str, dict[str, Any]]:
    entries = json.loads((corpus / "corpus.json").read_text())["scenarios"]
    return {entry["name"]: entry for entry in entries}


def test_every_scenario_gives_the_findings_it_was_made_for(corpus: Path) -> None:
    made = scenarios(corpus)
    assert len(made) == len(SCENARIOS) >= 20
    for name, (code, problems, warnings) in EXPECTED.items():
        report = made[name]["report"]
        assert made[name]["exit"] == code, (name, report)
        found = Counter(p["kind"] for p in report["problems"])
        assert found == Counter(problems), (name, found)
        assert Counter(w["kind"] for w in report["warnings"]) == Counter(warnings), name
    # Those whose effects depend on the trail's shape: their kinds, at least.
    assert {p["kind"] for p in made["wrong-key"]["report"]["problems"]} >= {
        "bad_signature",
        "unsigned",
        "bad_proof",
    }
    assert {p["kind"] for p in made["expired-key"]["report"]["problems"]} >= {
        "expired_key",
        "unsigned",
    }
    assert {p["kind"] for p in made["checkpoint-altered"]["report"]["problems"]} >= {
        "bad_signature"
    }
    assert {p["kind"] for p in made["checkpoints-emptied"]["report"]["problems"]} >= {
        "unsigned",
        "bad_proof",
    }
    assert made["trust-bundle-keys"]["report"]["trusted_keys"] == "bundle"
    assert made["reordered"]["report"]["records_checked"] == len(USERS) * PER_USER
    assert made["erased-subject"]["report"]["erasure_records"] == 1
    assert made["clean"]["report"]["erasure_records"] == 0


def test_the_console_script_gives_the_corpus_report(corpus: Path) -> None:
    made = scenarios(corpus)
    for name in ("clean", "flipped-proof-bit", "expired-key", "bad-crc"):
        entry = made[name]
        done = run_cli(
            ["verify", "--bundle", entry["bundle"], "--json", *entry["args"]],
            cwd=corpus,
            env={"PATH": "/usr/bin:/bin", "RG_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        )
        assert done.returncode == entry["exit"], done.stderr
        assert normalized(json.loads(done.stdout)) == entry["report"], name
