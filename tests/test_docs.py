"""The manual stays true to the code: every setting is a row of the settings table in
docs/operations.md, with its default; the links of the top-level pages and docs/ lead to files and
headings that exist; the receipts shown have the receipt's fields; the code blocks of docs/*.md
run; and LICENSE is the Apache License 2.0 text as published.

Every fenced code block of docs/*.md has one of these markers on the line right before it (an
HTML comment, invisible once rendered); a block without one fails
`test_unit_every_code_block_of_the_manual_is_marked`:

    <!-- runs -->             a complete Python program: run with this Python against the session
                              broker (RG_KAFKA_BOOTSTRAP_SERVERS, and RG_SCHEMA_REGISTRY_URL when
                              the program reads it), each quoted topic name it uses replaced by a
                              fresh one; what it prints must be the next block, marked
    <!-- output -->           (its output, compared as text).
    <!-- runs as NAME -->     a file saved as NAME and run the way its page says, by a test here
                              (RUNS_AS names which).
    <!-- checked by PATH -->  data the test file PATH reads and checks (test vectors).
    <!-- illustrative -->     shown, not run: commands against a running service or cluster,
                              configuration fragments, shapes of answers.
"""

import ast
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.kafka import (
    KafkaConsumerClient,
    KafkaConsumerConfig,
    KafkaMessage,
    KafkaProducerClient,
    KafkaProducerConfig,
)
from app.settings import Settings
from tests.helpers import ROOT
from tests.helpers.processes import Running
from tests.helpers.streams import create_topics, process_env

OPERATIONS = ROOT / "docs" / "operations.md"
# A row of the settings table: "| `RG_NAME` | default | meaning |".
SETTING_ROW = re.compile(r"^\| `(RG_[A-Z0-9_]+)` \|", re.MULTILINE)
SETTING_DEFAULT = re.compile(r"^\| `(RG_[A-Z0-9_]+)` \| ([^|]+) \|", re.MULTILINE)
# A Markdown link's target: [text](target).
LINK = re.compile(r"\]\(([^)\s]+)\)")


def settings_table() -> str:
    """The text of the `## Settings` section of docs/operations.md, up to the next heading."""
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1]
    return section.split("\n## ", 1)[0]


def documented_settings() -> list[str]:
    return SETTING_ROW.findall(settings_table())


def local_links(document: Path) -> list[str]:
    """The links of a Markdown file that point into the repository (`file` or `file#anchor`)."""
    targets = LINK.findall(document.read_text(encoding="utf-8"))
    return [target for target in targets if "://" not in target and not target.startswith("#")]


def anchors(document: Path) -> set[str]:
    """The anchors a Markdown renderer gives the headings of a file: lower case, punctuation
    dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", document.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_unit_every_setting_is_a_row_of_the_settings_table() -> None:
    documented = set(documented_settings())
    missing = [
        f"RG_{name.upper()}"
        for name in Settings.model_fields
        if f"RG_{name.upper()}" not in documented
    ]
    assert missing == []


def test_unit_every_row_of_the_settings_table_is_a_setting() -> None:
    fields = {f"RG_{name.upper()}" for name in Settings.model_fields}
    rows = documented_settings()
    assert [name for name in rows if name not in fields] == []
    assert sorted(name for name in rows if rows.count(name) > 1) == []


def test_unit_the_settings_table_shows_each_default() -> None:
    # A default written as a literal is the field's default, as the environment would spell it;
    # one said in words ("unset", "the audit topic") stands for a field that has none of its own.
    wrong = []
    for name, cell in SETTING_DEFAULT.findall(settings_table()):
        default = Settings.model_fields[name.removeprefix("RG_").lower()].default
        spelled = ",".join(default) if isinstance(default, list) else str(default)
        literal = re.fullmatch(r"`([^`]*)`", cell.strip())
        right = literal[1] == spelled if literal else default in (None, [], {})
        if not right:
            wrong.append(f"{name}: {cell.strip()} (the default is {default!r})")
    assert wrong == []


def test_unit_the_readme_links_to_each_part_of_the_manual() -> None:
    links = {link.split("#", 1)[0] for link in local_links(ROOT / "README.md")}
    manual = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert manual >= {"docs/api.md", "docs/operations.md", "docs/library.md", "docs/development.md"}
    assert manual - links == set()


def test_unit_the_readme_links_the_license_changelog_security_policy_and_contributing() -> None:
    links = {link.split("#", 1)[0] for link in local_links(ROOT / "README.md")}
    assert {"LICENSE", "CHANGELOG.md", "SECURITY.md", "CONTRIBUTING.md"} <= links


def test_unit_the_license_is_the_apache_license_2_0_as_published() -> None:
    # The license asks for its text unchanged: the SHA-256 of the Apache Software Foundation's
    # LICENSE-2.0.txt (202 lines, the appendix's placeholders left as they are).
    digest = hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest()
    assert digest == "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_unit_every_link_of_the_readme_and_the_manual_leads_somewhere() -> None:
    # The top-level pages (README, CHANGELOG, SECURITY, CONTRIBUTING) and the manual.
    documents = [*sorted(ROOT.glob("*.md")), *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for document in documents:
        # Links within the page too: "#anchor" is this file's heading.
        targets = local_links(document) + [
            document.name + link
            for link in LINK.findall(document.read_text(encoding="utf-8"))
            if link.startswith("#")
        ]
        for target in targets:
            path, _, anchor = target.partition("#")
            file = (document.parent / path).resolve()
            if not file.exists() or (anchor and anchor not in anchors(file)):
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert broken == []


# --- The code blocks of docs/*.md -------------------------------------------------------------

MARKER = re.compile(
    r"<!-- (runs|output|illustrative|runs as [\w.]+|checked by tests/[\w/]+\.py) -->"
)
# The files of `<!-- runs as NAME -->` blocks, each run by a test of this module.
RUNS_AS = {"billing.py": "test_the_handler_of_streams_md_bills_each_request"}
# Where a program names a topic: `topic=`/`topics=` arguments, the first argument of a
# producer's calls, and a `TOPIC = ...` constant.
TOPIC_KEYWORDS = {"topic", "topics"}
PRODUCING_CALLS = {"publish", "publish_json", "send", "queue"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page: its marker (None when it has none), info string and text."""

    page: str
    line: int
    marker: str | None
    info: str
    text: str

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def code_blocks(document: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order."""
    blocks = []
    lines = document.read_text(encoding="utf-8").split("\n")
    start: int | None = None
    for number, line in enumerate(lines):
        if not line.startswith("```"):
            continue
        if start is None:
            start = number
            continue
        before = lines[start - 1].strip() if start else ""
        marker = MARKER.fullmatch(before)
        blocks.append(
            Block(
                page=document.name,
                line=start + 1,
                marker=marker[1] if marker else None,
                info=lines[start][3:].strip(),
                text="\n".join(lines[start + 1 : number]) + "\n",
            )
        )
        start = None
    return blocks


def manual_blocks() -> list[Block]:
    return [block for page in sorted((ROOT / "docs").glob("*.md")) for block in code_blocks(page)]


def programs() -> list[tuple[Block, Block]]:
    """Each `runs` program of the manual with the `output` block that follows it."""
    blocks = manual_blocks()
    return [
        (block, after)
        for block, after in itertools.pairwise(blocks)
        if block.marker == "runs" and after.marker == "output" and after.page == block.page
    ]


def topics_of(program: str) -> set[str]:
    """The topic names a program writes as string literals (see TOPIC_KEYWORDS)."""
    found: set[str] = set()

    def literals(node: ast.expr) -> list[str]:
        items = node.elts if isinstance(node, ast.List) else [node]
        return [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]

    for node in ast.walk(ast.parse(program)):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in TOPIC_KEYWORDS:
                    found.update(literals(keyword.value))
            producing = isinstance(node.func, ast.Attribute) and node.func.attr in PRODUCING_CALLS
            if producing and node.args:
                found.update(literals(node.args[0]))
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "TOPIC" for target in node.targets
        ):
            found.update(literals(node.value))
    return found


def with_fresh_topics(program: str) -> str:
    """The program with each topic name it writes replaced by a name no other run uses."""
    for name in topics_of(program):
        program = program.replace(f'"{name}"', f'"test-{uuid.uuid4().hex}"')
    return program


def test_unit_every_code_block_of_the_manual_is_marked() -> None:
    blocks = manual_blocks()
    assert len(blocks) > 20
    assert [block.where for block in blocks if block.marker is None] == []


def test_unit_every_program_has_its_output_and_every_marker_its_runner() -> None:
    blocks = manual_blocks()
    paired = {part for pair in programs() for part in pair}
    wrong = [
        f"{block.where}: a `{block.marker}` block without its pair"
        for block in blocks
        if block.marker in ("runs", "output") and block not in paired
    ]
    wrong += [
        f"{block.where}: a program is Python" for block, _ in programs() if block.info != "python"
    ]
    for block in blocks:
        if block.marker and block.marker.startswith("runs as "):
            name = block.marker.removeprefix("runs as ")
            if name not in RUNS_AS or RUNS_AS[name] not in globals():
                wrong.append(f"{block.where}: no test runs {name}")
        if block.marker and block.marker.startswith("checked by "):
            checker = ROOT / block.marker.removeprefix("checked by ")
            if not checker.is_file() or block.page not in checker.read_text(encoding="utf-8"):
                wrong.append(f"{block.where}: {checker.name} does not read {block.page}")
    assert wrong == []
    assert len(programs()) >= 2


def test_unit_a_program_writes_its_topics_as_literals_the_test_finds() -> None:
    program = (
        'TOPIC = "orders"\n'
        'producer.publish("agent.events", {"a": 1})\n'
        'KafkaConsumerConfig(topics=["agent.events", "more"])\n'
        'KafkaAuditLogger(producer, topic="ai.audit")\n'
        'print("orders")\n'
    )
    assert topics_of(program) == {"orders", "agent.events", "more", "ai.audit"}
    fresh = with_fresh_topics(program)
    assert '"orders"' not in fresh
    assert '"agent.events"' not in fresh
    assert fresh.count('"test-') == 6


@pytest.mark.parametrize(
    ("program", "output"), programs(), ids=[block.where for block, _ in programs()]
)
def test_the_programs_of_the_manual_print_what_the_manual_shows(
    program: Block,
    output: Block,
    kafka_bootstrap: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RG_")}
    env["RG_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    if "RG_SCHEMA_REGISTRY_URL" in program.text:
        env["RG_SCHEMA_REGISTRY_URL"] = request.getfixturevalue("schema_registry_url")
    script = tmp_path / "program.py"
    script.write_text(with_fresh_topics(program.text), encoding="utf-8")
    ran = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout == output.text


async def test_the_handler_of_streams_md_bills_each_request(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    (handler,) = [b for b in manual_blocks() if b.marker == "runs as billing.py"]
    (tmp_path / "billing.py").write_text(handler.text, encoding="utf-8")
    # Both exist before the processor starts: the reader below assigns the output's partitions.
    requests, bills = await create_topics(kafka_bootstrap, 3, 3)
    inputs = {"customer-7": 1200, "customer-8": 450, "customer-9": 99}
    producer = KafkaProducerClient(config=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap))
    async with producer:
        for customer, cents in inputs.items():
            await producer.publish(requests, {"cents": cents}, key=customer)
    # The page's command, run from the folder holding billing.py.
    args = ["process", "--handler", "billing:handle", "--input", requests, "--output", bills]
    running = Running(args, cwd=tmp_path, env=process_env(kafka_bootstrap, bills))
    try:
        outputs = await read_records(kafka_bootstrap, bills, count=len(inputs))
    finally:
        code = running.stop()
    assert code == 0, running.output()[-3000:]
    assert sorted(m.value["bill_for"] for m in outputs) == sorted(inputs)
    assert {m.value["bill_for"]: m.value["cents"] for m in outputs} == inputs


async def read_records(bootstrap: str, topic: str, *, count: int) -> list[KafkaMessage]:
    """The first `count` records of `topic` (every partition), waiting up to 60 s."""
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic], bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
    )
    records: list[KafkaMessage] = []
    deadline = time.monotonic() + 60
    async with consumer:
        while len(records) < count and time.monotonic() < deadline:
            records += await consumer.poll(timeout_ms=500)
    return records


def test_unit_the_receipts_shown_have_the_receipt_fields() -> None:
    # The receipt examples of README.md and docs/api.md, against the document's AuditReceipt
    # (the model's fields, in order).
    document = json.loads((ROOT / "openapi.json").read_text(encoding="utf-8"))
    fields = list(document["components"]["schemas"]["AuditReceipt"]["properties"])
    shown = []
    for page in (ROOT / "README.md", ROOT / "docs" / "api.md"):
        for block in code_blocks(page):
            if block.info == "json" and '"event_id"' in block.text and '"digest"' in block.text:
                shown.append(list(json.loads(block.text)))
    assert len(shown) == 2
    assert shown == [fields, fields]
