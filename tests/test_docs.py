"""The manual stays true to the code: every setting is a row of the settings table in
docs/operations.md, with its default, and the links of README.md and docs/ lead to files and
headings that exist (unit tests, no broker)."""

import re
from pathlib import Path

from app.settings import Settings
from tests.helpers import ROOT

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


def test_unit_every_link_of_the_readme_and_the_manual_leads_somewhere() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
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
