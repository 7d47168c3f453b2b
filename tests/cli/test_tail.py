"""How `tail` shows a record to a person (app/cli/tail.py), without a broker."""

import pytest

from app.cli.tail import as_text_line
from app.kafka import KafkaMessage

# Retitles the terminal, clears it and prints a red line that looks like a verdict.
TERMINAL_ATTACK = "\u001b]0;pwned-title\u0007\u001b[2J\u001b[31mFAKE: verify clean\u001b[0m"


def control_characters(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) <= 0x9F]


def test_unit_a_text_value_cannot_drive_the_terminal() -> None:
    line = as_text_line(
        KafkaMessage(topic="events.term", partition=0, offset=7, value=TERMINAL_ATTACK)
    )
    assert control_characters(line) == []
    assert line == (
        "events.term[0]@7 key=None: "
        r"\x1b]0;pwned-title\x07\x1b[2J\x1b[31mFAKE: verify clean\x1b[0m"
    )


@pytest.mark.parametrize(
    "value",
    [
        "a\nb\rc\x00d\x7f",
        "\u009b2J C1 CSI",
        {"nested": "\u009b31m in JSON"},
        ["\u0085 next line"],
    ],
)
def test_unit_c0_and_c1_controls_are_escaped_and_tabs_kept(value: object) -> None:
    line = as_text_line(KafkaMessage(topic="t", partition=0, offset=0, value=value, key="k\t1"))
    assert control_characters(line) == []


def test_unit_tabs_and_other_text_are_shown_as_they_are() -> None:
    line = as_text_line(KafkaMessage(topic="t", partition=0, offset=0, value="é\tö ✓"))
    assert line.endswith(": é\tö ✓")
