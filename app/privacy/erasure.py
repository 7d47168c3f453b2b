"""What the write and read paths call when RG_ERASURE=on: seal an event's fields under its
subject's data key before its canonical JSON is made, open them on reads, and destroy a
subject's keys.

Sealed: `prompt`, `response` and the metadata fields RG_ERASURE_FIELDS names (string values;
another JSON value is sealed as its JSON text, the field then holding the sealed string); in the
structured messages of record schema v2 every value but a message's `role`, `type` and
`finish_reason` and a part's `type` (each sealed as its JSON text, so it opens to the value it
was: the messages keep their shape). Not sealed: `user_id` (the record key), `model`, times, ids
and the other metadata: see docs/privacy.md. The subject is the `user_id`, or the metadata field
RG_ERASURE_SUBJECT_FIELD (an event without it is refused: it could never be erased).
"""

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from app.errors import ErasureKeysUnavailableError, InvalidRequestError
from app.kafka import KafkaAuditEvent, KafkaMessage
from app.privacy.keystore import KeyStore
from app.privacy.sealing import (
    SEALED_PREFIX,
    DataKey,
    Kek,
    SealingError,
    is_sealed,
    kid_of,
    open_sealed,
    seal,
)

ERASURE_HEADER = "rg-erasure"
ERASED_MARKER = "[erased by {erasure}]"
UNKNOWN_KEY_MARKER = "[sealed: key {kid} unknown]"


# The text fields of an event that are sealed (record schema v2 adds the input that led to a
# match), and v2's structured messages, sealed value by value (see the module docstring).
_SEALED = ("prompt", "response", "match_input")
_STRUCTURED = ("system_instructions", "input_messages", "output_messages")
# What stays open in a message and in a part: the shape the model checks, and no one's words.
_OPEN_IN_MESSAGE = frozenset({"role", "type", "finish_reason"})
_OPEN_IN_PART = frozenset({"type"})


class Erasure:
    """Seals and opens events' fields with a `KeyStore`'s keys (see the module docstring)."""

    def __init__(
        self,
        store: KeyStore,
        kek: Kek,
        *,
        subject_field: str | None = None,
        fields: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.kek = kek
        self._subject_field = subject_field
        self._fields = list(fields)

    def subject_of(self, event: KafkaAuditEvent) -> str:
        """The subject `event` belongs to; `InvalidRequestError` when the subject field is
        missing or not a non-empty string."""
        if self._subject_field is None:
            return event.user_id
        subject = event.metadata.get(self._subject_field)
        if not isinstance(subject, str) or not subject:
            raise InvalidRequestError(
                f"metadata.{self._subject_field} (RG_ERASURE_SUBJECT_FIELD) must be a "
                "non-empty string: it names whose data the record holds"
            )
        return subject

    async def seal_events(self, events: list[KafkaAuditEvent]) -> list[KafkaAuditEvent]:
        """`events` with their fields sealed, in order; a new subject's key is stored first.
        Raises `KeyStoreUnavailableError` (503) rather than return anything unsealed."""
        hashes = [self.kek.subject_hash(self.subject_of(event)) for event in events]
        subjects = set(hashes)
        if len(subjects) == 1:
            # One subject (every POST /audit): awaited here, not as a task of its own, which
            # cost more CPU per event than sealing it.
            keys = {hashes[0]: await self.store.key_for(hashes[0])}
        else:
            found = await asyncio.gather(*(self.store.key_for(h) for h in subjects))
            keys = dict(zip(subjects, found, strict=True))
        return [self.seal_event(event, keys[h]) for event, h in zip(events, hashes, strict=True)]

    def seal_event(self, event: KafkaAuditEvent, key: DataKey) -> KafkaAuditEvent:
        """`event` with its fields sealed under `key`."""
        eid = event.event_id
        update: dict[str, Any] = {
            name: seal(key, eid, name, text)
            for name in _SEALED
            if (text := getattr(event, name)) is not None
        }
        for name in _STRUCTURED:
            if (messages := getattr(event, name)) is not None:
                update[name] = _walk_messages(
                    name, messages, lambda at, value: seal(key, eid, at, json.dumps(value))
                )
        present = [name for name in self._fields if name in event.metadata]
        if present:
            metadata = dict(event.metadata)
            for name in present:
                value = metadata[name]
                text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                metadata[name] = seal(key, eid, f"metadata.{name}", text)
            update["metadata"] = metadata
        return event.model_copy(update=update)

    def open_value(self, value: dict[str, Any]) -> dict[str, Any]:
        """A stored event (as JSON) with its sealed fields opened, or, for a destroyed key, the
        marker naming the erasure record. Raises `KeyStoreUnavailableError` while the keys are
        not fresh."""
        eid = str(value.get("event_id", ""))
        opened = dict(value)
        for name in _SEALED:
            if is_sealed(opened.get(name)):
                opened[name] = self._open(eid, name, opened[name])
        for name in _STRUCTURED:
            if isinstance(messages := opened.get(name), list):
                opened[name] = _walk_messages(
                    name,
                    messages,
                    lambda at, value: (
                        self._open(eid, at, value, as_json=True) if is_sealed(value) else value
                    ),
                )
        metadata = opened.get("metadata")
        if isinstance(metadata, dict) and any(is_sealed(v) for v in metadata.values()):
            opened["metadata"] = {
                k: self._open(eid, f"metadata.{k}", v) if is_sealed(v) else v
                for k, v in metadata.items()
            }
        return opened

    def open_view(self, view: bytes) -> bytes:
        """A GET /messages view's JSON with its value's sealed fields opened (`open_value`);
        as it is when it holds none, or while the keys cannot be used (the sealed form shows,
        never anything else)."""
        if SEALED_PREFIX.encode() not in view:
            return view
        shown = json.loads(view)
        value = shown.get("value")
        if not isinstance(value, dict):
            return view
        try:
            shown["value"] = self.open_value(value)
        except ErasureKeysUnavailableError:
            return view
        return json.dumps(shown, separators=(",", ":"), ensure_ascii=False).encode()

    def open_message(self, message: KafkaMessage) -> KafkaMessage:
        """A consumed record (its value decoded) with its value's sealed fields opened
        (`open_value`); as it is when it holds none, or while the keys cannot be used."""
        value = message.value
        if not isinstance(value, dict):
            return message
        try:
            return message.model_copy(update={"value": self.open_value(value)})
        except ErasureKeysUnavailableError:
            return message

    def _open(self, event_id: str, field: str, sealed: str, *, as_json: bool = False) -> Any:
        kid = kid_of(sealed)
        key = self.store.key_by_kid(kid)
        if key is None:
            erasure = self.store.erasure_of(kid)
            if erasure is not None:
                return ERASED_MARKER.format(erasure=erasure)
            return UNKNOWN_KEY_MARKER.format(kid=kid)
        try:
            text = open_sealed(key, event_id, field, sealed)
        except SealingError as exc:
            return f"[sealed: {exc}]"
        return json.loads(text) if as_json else text


def _walk_messages(
    name: str, messages: list[Any], change: Callable[[str, Any], Any]
) -> list[dict[str, Any]]:
    """`messages` (a structured message field named `name`) with `change(path, value)` in place
    of every value but those left open; `path` names the value for the associated data, e.g.
    `input_messages.0.parts.1.content`."""
    walked: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            walked.append(message)
            continue
        copy: dict[str, Any] = {}
        for key, value in message.items():
            at = f"{name}.{i}.{key}"
            if key in _OPEN_IN_MESSAGE:
                copy[key] = value
            elif key == "parts" and isinstance(value, list):
                copy[key] = [
                    {
                        k: v if k in _OPEN_IN_PART else change(f"{at}.{j}.{k}", v)
                        for k, v in part.items()
                    }
                    if isinstance(part, dict)
                    else part
                    for j, part in enumerate(value)
                ]
            else:
                copy[key] = change(at, value)
        walked.append(copy)
    return walked
