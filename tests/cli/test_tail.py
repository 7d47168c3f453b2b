"""How `tail` shows a record to a person (app/cli/tail.py), without a broker."""

import json

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.attributes import user_attributes as user

from app.cli.tail import as_json_line, as_otlp_line, as_text_line
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


def test_unit_otlp_lines_are_logs_requests_of_one_genai_event() -> None:
    v1 = KafkaMessage(
        topic="t",
        partition=0,
        offset=3,
        value={
            "user_id": "u-1",
            "model": "gpt-4o",
            "prompt": "Hi?",
            "response": "Hello.",
            "request_id": None,
            "metadata": {},
            "timestamp_utc": "2026-01-01T00:00:01.000002Z",
            "event_id": "e-1",
            "schema_version": 1,
        },
        headers={"rg-digest": b"sha256:ab", "rg-seq": b"7", "rg-event-id": b"e-1"},
    )
    line = as_otlp_line(v1)
    assert "\n" not in line
    request = json_format.Parse(line, ExportLogsServiceRequest())
    (log,) = request.resource_logs[0].scope_logs[0].log_records
    assert log.event_name == "gen_ai.client.inference.operation.details"
    assert log.time_unix_nano == 1_767_225_601_000_002_000
    attributes = {kv.key: kv.value for kv in log.attributes}
    assert attributes[gen_ai.GEN_AI_REQUEST_MODEL].string_value == "gpt-4o"
    assert attributes[user.USER_ID].string_value == "u-1"
    assert attributes["rg.digest"].string_value == "sha256:ab"
    assert attributes["rg.seq"].string_value == "7"
    (message,) = attributes[gen_ai.GEN_AI_INPUT_MESSAGES].array_value.values
    assert {kv.key for kv in message.kvlist_value.values} == {"role", "parts"}
    # Ids a record took from OTLP go out as OTLP JSON writes them: hex.
    v2 = v1.model_copy(update={"value": {**v1.value, "trace_id": "ab" * 16, "span_id": "cd" * 8}})
    assert (
        json.loads(as_otlp_line(v2))["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["traceId"]
        == "ab" * 16
    )
    # A value that is no record is printed as --json would.
    assert as_otlp_line(v1.model_copy(update={"value": "text"})) == as_json_line(
        v1.model_copy(update={"value": "text"})
    )
