"""Sealing and opening events with a key store in memory (unit, no broker): which fields are
sealed, the subject field, markers for destroyed and unknown keys."""

import os

import pytest

from app.errors import InvalidRequestError
from app.kafka import KafkaAuditEvent
from app.privacy.erasure import ERASED_MARKER, UNKNOWN_KEY_MARKER, Erasure
from app.privacy.sealing import DataKey, Kek, is_sealed, kid_of


class UnitKeys:
    """A `KeyStore` in memory."""

    def __init__(self, kek: Kek) -> None:
        self.kek = kek
        self.keys: dict[str, DataKey] = {}
        self.erased: dict[str, str] = {}

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to stop."""

    async def key_for(self, subject_hash: str) -> DataKey:
        for key in self.keys.values():
            if key.subject == subject_hash:
                return key
        key = self.kek.new_key(subject_hash)
        self.keys[key.kid] = key
        return key

    def key_by_kid(self, kid: str) -> DataKey | None:
        return self.keys.get(kid)

    def erasure_of(self, kid: str) -> str | None:
        return self.erased.get(kid)

    def erasure(self, erasure_id: str) -> tuple[str, list[str]] | None:
        return None

    def kids_of(self, subject_hash: str) -> list[str]:
        return [k.kid for k in self.keys.values() if k.subject == subject_hash]

    async def destroy(self, subject_hash: str, erasure_id: str) -> list[str]:
        kids = self.kids_of(subject_hash)
        for kid in kids:
            del self.keys[kid]
            self.erased[kid] = erasure_id
        return kids

    async def still_stored(self, subject_hash: str, kids: list[str]) -> bool:
        return False


def event(**fields: object) -> KafkaAuditEvent:
    return KafkaAuditEvent.model_validate(
        {"user_id": "u1", "model": "m", "prompt": "secret p", "response": "secret r", **fields}
    )


async def test_unit_v2_match_input_and_messages_are_sealed_and_keep_their_shape() -> None:
    # Record schema v2: text fields are sealed like prompt/response; structured messages value
    # by value, the role, types and finish reason left open, so the record keeps its shape.
    kek = Kek(os.urandom(32))
    keys = UnitKeys(kek)
    erasure = Erasure(keys, kek)
    (sealed,) = await erasure.seal_events(
        [event(prompt=None, response=None, match_input="secret m")]
    )
    assert (sealed.prompt, sealed.response) == (None, None)
    assert is_sealed(sealed.match_input)
    assert b"secret" not in sealed.canonical_json()
    assert erasure.open_value(sealed.model_dump(mode="json"))["match_input"] == "secret m"
    messages = {
        "system_instructions": [{"type": "text", "content": "secret s"}],
        "input_messages": [
            {"role": "user", "name": "secret n", "parts": [{"type": "text", "content": "secret"}]}
        ],
        "output_messages": [
            {
                "role": "assistant",
                "finish_reason": "tool_call",
                "parts": [
                    {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"q": "secret a"}}
                ],
            }
        ],
    }
    (sealed,) = await erasure.seal_events([event(**messages)])
    stored = sealed.model_dump(mode="json", exclude_none=True)
    assert b"secret" not in sealed.canonical_json()
    (message,) = stored["input_messages"]
    assert message["role"] == "user"
    assert is_sealed(message["name"])
    assert message["parts"][0]["type"] == "text"
    assert is_sealed(message["parts"][0]["content"])
    assert stored["output_messages"][0]["finish_reason"] == "tool_call"
    # Still a valid event (what a reader of the trail validates), and it opens to what was sent.
    KafkaAuditEvent.model_validate(stored)
    opened = erasure.open_value(stored)
    assert {name: opened[name] for name in messages} == messages
    # A value moved to another place does not open.
    moved = {**stored, "system_instructions": [{"type": "text", "content": message["name"]}]}
    assert erasure.open_value(moved)["system_instructions"][0]["content"].startswith("[sealed: ")
    await keys.destroy(kek.subject_hash("u1"), "erasure-2")
    erased = erasure.open_value(stored)
    marker = ERASED_MARKER.format(erasure="erasure-2")
    assert erased["input_messages"][0]["parts"] == [{"type": "text", "content": marker}]
    assert erased["output_messages"][0]["parts"][0]["arguments"] == marker


async def test_unit_prompt_response_and_named_metadata_are_sealed_the_rest_kept() -> None:
    kek = Kek(os.urandom(32))
    erasure = Erasure(UnitKeys(kek), kek, fields=["diagnosis", "scores"])
    meta = {"diagnosis": "flu", "scores": [1, 2], "app": "bot"}
    (sealed,) = await erasure.seal_events([event(metadata=meta)])
    assert is_sealed(sealed.prompt)
    assert is_sealed(sealed.response)
    assert is_sealed(sealed.metadata["diagnosis"])
    assert is_sealed(sealed.metadata["scores"])
    assert sealed.metadata["app"] == "bot"
    assert (sealed.user_id, sealed.model) == ("u1", "m")
    assert b"secret" not in sealed.canonical_json()
    assert b"flu" not in sealed.canonical_json()
    opened = erasure.open_value(sealed.model_dump(mode="json"))
    assert opened["prompt"] == "secret p"
    assert opened["metadata"] == {"diagnosis": "flu", "scores": "[1, 2]", "app": "bot"}


async def test_unit_a_destroyed_key_reads_as_the_erasure_and_an_unknown_one_says_so() -> None:
    kek = Kek(os.urandom(32))
    keys = UnitKeys(kek)
    erasure = Erasure(keys, kek)
    (sealed,) = await erasure.seal_events([event()])
    stored = sealed.model_dump(mode="json")
    await keys.destroy(kek.subject_hash("u1"), "erasure-1")
    assert erasure.open_value(stored)["prompt"] == ERASED_MARKER.format(erasure="erasure-1")
    assert sealed.prompt is not None
    kid = kid_of(sealed.prompt)
    keys.erased.clear()
    assert erasure.open_value(stored)["response"] == UNKNOWN_KEY_MARKER.format(kid=kid)


async def test_unit_the_subject_field_names_whose_key_and_must_be_there() -> None:
    kek = Kek(os.urandom(32))
    keys = UnitKeys(kek)
    erasure = Erasure(keys, kek, subject_field="patient")
    await erasure.seal_events([event(metadata={"patient": "p-7"})])
    assert keys.kids_of(kek.subject_hash("p-7"))
    assert not keys.kids_of(kek.subject_hash("u1"))
    with pytest.raises(InvalidRequestError, match="RG_ERASURE_SUBJECT_FIELD"):
        await erasure.seal_events([event()])
