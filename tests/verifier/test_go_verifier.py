"""The Go verifier (`verifier/`) against `ractogateway-kafka verify --bundle` on a corpus made
from a real trail on the session broker (tests/helpers/bundle_corpus.py): on every scenario
both exit alike and, where they report, their reports are equal as docs/auditors.md compares
them; every finding kind a bundle check can give is in the corpus."""

import asyncio
import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.main import create_app
from app.settings import Settings
from bench.goverifier import make_bundle
from tests.corpus import make_corpus as bundle_corpus
from tests.helpers import goverifier
from tests.helpers.bundle_corpus import Scenario, make_corpus
from tests.helpers.processes import run_cli
from tests.helpers.tlog import go

ORIGIN = "ractogateway-kafka/go-verifier-tests"
USERS = [f"user-{i}" for i in range(6)]
PER_USER = 4
# What a bundle check can find (the rest need whole topics: missing, truncated, writer_missing).
BUNDLE_KINDS = {
    "altered",
    "forged",
    "missing",
    "conflict",
    "duplicate",
    "bad_signature",
    "expired_key",
    "key_mismatch",
    "malformed_checkpoint",
    "unsigned",
    "not_covered",
    "rollback",
    "fork",
    "unknown_writer",
    "bad_proof",
}


@dataclass
class Corpus:
    """The corpus's folder, its scenarios, and the environment the Python CLI runs in."""

    folder: Path
    scenarios: list[Scenario]
    env: dict[str, str]
    clean: Path | None = None  # the real export the corpus was made from
    private: Path | None = None  # the trail's signing key (PEM)


async def _service_run(bootstrap: str, topic: str, key: Path) -> None:
    settings = Settings(
        _env_file=None,
        kafka_bootstrap_servers=[bootstrap],
        audit_topic=topic,
        audit_signing_key_file=key,
        audit_checkpoint_s=0.2,
        audit_writers_s=0.2,
        audit_log_origin=ORIGIN,
    )
    async with LifespanManager(create_app(settings), startup_timeout=60, shutdown_timeout=60) as m:
        transport = httpx.ASGITransport(app=m.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
            last: dict[str, Any] = {}
            for i in range(PER_USER):
                for user in USERS:
                    event = {"user_id": user, "model": "m", "prompt": f"p{i}", "response": "r"}
                    answer = await client.post("/audit", json=event)
                    assert answer.status_code == 201, answer.text
                    last = answer.json()
            params = {"writer": last["writer"], "seq": last["seq"]}
            for _ in range(300):
                answer = await client.get("/audit/proof", params=params)
                if answer.status_code == 200:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"no proof of the last record: {answer.text}")


@pytest.fixture(scope="module")
def corpus(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    folder = tmp_path_factory.mktemp("go-verifier")
    topic = f"test-{uuid.uuid4().hex}"
    key = Ed25519PrivateKey.generate()
    private = folder / "signing.key.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(private, 0o600)
    asyncio.run(_service_run(kafka_bootstrap, topic, private))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    env |= {
        "RG_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RG_AUDIT_TOPIC": topic,
        "RG_AUDIT_SIGNING_KEY_FILE": str(private),
        "RG_AUDIT_LOG_ORIGIN": ORIGIN,
    }
    clean = folder / "all.zip"
    done = run_cli(["export", "--out", str(clean)], cwd=folder, env=env)
    assert done.returncode == 0, done.stderr
    scenarios = make_corpus(clean, key, ORIGIN, folder / "corpus")
    return Corpus(folder / "corpus", scenarios, _python_env(), clean, private)


def _python_env() -> dict[str, str]:
    # verify --bundle reads no broker: nothing listens on port 1.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    return env | {"RG_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}


def _compare(corpus: Corpus, go_verifier: Path) -> tuple[list[tuple[Any, ...]], set[str]]:
    """Scenarios on which the two verifiers differ, and every kind they found."""
    differ: list[tuple[Any, ...]] = []
    found: set[str] = set()
    for scenario in corpus.scenarios:
        bundle = corpus.folder / f"{scenario.name}.zip"
        go_exit, go_report, go_err = goverifier.run(go_verifier, bundle, scenario.args)
        py_exit, py_report = _python(corpus, scenario)
        if go_exit != py_exit:
            differ.append((scenario.name, "exit", go_exit, py_exit, go_err))
        elif go_report is not None and py_report is not None:
            go_doc, py_doc = goverifier.normalised(go_report), goverifier.normalised(py_report)
            if go_doc != py_doc:
                differ.append((scenario.name, go_doc, py_doc))
            found |= {f["kind"] for f in go_report["problems"] + go_report["warnings"]}
    return differ, found


def test_go_module_is_vetted_formatted_and_its_own_tests_pass() -> None:
    source = goverifier.SOURCE
    for command in ([go(), "vet", "./..."], [go(), "test", "./..."]):
        done = subprocess.run(command, cwd=source, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    gofmt = Path(go()).with_name("gofmt")
    done = subprocess.run(
        [str(gofmt), "-l", "."], cwd=source, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", f"not gofmt-formatted: {done.stdout}"


def test_unit_both_verifiers_agree_on_a_corpus_of_a_bundle_made_without_a_broker(
    tmp_path: Path, go_verifier: Path
) -> None:
    """The corpus made from a bundle that the project's own code builds (bench/goverifier.py:
    one writer, a version 2 checkpoint, a proof per record): the same reports, no broker."""
    key = Ed25519PrivateKey.generate()
    clean = tmp_path / "made.zip"
    make_bundle(60, clean, key)
    scenarios = make_corpus(clean, key, "ractogateway-kafka/bench", tmp_path / "corpus")
    corpus = Corpus(tmp_path / "corpus", scenarios, _python_env())
    differ, found = _compare(corpus, go_verifier)
    assert not differ, json.dumps(differ[:3], indent=1, default=str)
    assert len(found) >= 12, sorted(found)
    # The erased subject's bundle is clean to both, with its one erasure record counted.
    args = next(s.args for s in scenarios if s.name == "erased_subject")
    _, erased, _ = goverifier.run(go_verifier, corpus.folder / "erased_subject.zip", args)
    assert erased is not None
    assert (erased["problems"], erased["erasure_records"], erased["records_valid"]) == ([], 1, 8)
    # The reports above were verify's in this process: the console script prints the same
    # bytes (a bundle with problems: the findings' order and details too).
    scenario = next(s for s in scenarios if s.name == "value_altered")
    bundle = corpus.folder / f"{scenario.name}.zip"
    done = run_cli(
        ["verify", "--bundle", str(bundle), "--json", *scenario.args],
        cwd=corpus.folder,
        env=corpus.env,
    )
    assert (done.returncode, done.stdout) == goverifier.python_run(bundle, scenario.args)


def _python(corpus: Corpus, scenario: Scenario) -> tuple[int, dict[str, Any] | None]:
    # In this process (the console script's own path: see the test below that shows both
    # print the same bytes), as a process would cost ~0.7 s a scenario of starting Python.
    code, out = goverifier.python_run(corpus.folder / f"{scenario.name}.zip", scenario.args)
    return code, json.loads(out) if code in {0, 1} else None


def test_both_verifiers_give_one_report_on_every_scenario(
    corpus: Corpus, go_verifier: Path
) -> None:
    assert len(corpus.scenarios) >= 20
    differ, found = _compare(corpus, go_verifier)
    assert not differ, json.dumps(differ[:3], indent=1, default=str)
    assert found >= BUNDLE_KINDS, sorted(BUNDLE_KINDS - found)
    # Each scenario gives what it was made for, and the exit code that goes with it.
    unexpected = []
    for scenario in corpus.scenarios:
        code, report, _ = goverifier.run(
            go_verifier, corpus.folder / f"{scenario.name}.zip", scenario.args
        )
        kinds = set() if report is None else {f["kind"] for f in report["problems"]}
        kinds |= set() if report is None else {f["kind"] for f in report["warnings"]}
        if not scenario.kinds <= kinds or code != scenario.exit:
            unexpected.append((scenario.name, sorted(kinds), sorted(scenario.kinds), code))
    assert not unexpected, "\n".join(map(str, unexpected))


def test_the_corpus_of_tests_corpus_gives_the_go_verifier_verifys_reports(
    corpus: Corpus, go_verifier: Path, tmp_path: Path
) -> None:
    """The bundle helper's own corpus (tests/corpus/make_corpus.py, made from the same real
    export; each scenario with the exit code and normalised report `verify --bundle` gave)."""
    assert corpus.clean is not None
    assert corpus.private is not None
    out = tmp_path / "corpus"
    entries = bundle_corpus.make(corpus.clean, corpus.private, out)
    assert len(entries) >= 20
    differ: list[tuple[Any, ...]] = []
    for entry in entries:
        code, report, err = goverifier.run(go_verifier, out / entry["bundle"], entry["args"], out)
        if code != entry["exit"] or report is None:
            differ.append((entry["name"], "exit", code, entry["exit"], err))
        elif goverifier.normalised(report) != entry["report"]:
            differ.append((entry["name"], goverifier.normalised(report), entry["report"]))
    assert not differ, json.dumps(differ[:3], indent=1, default=str)
