"""The bounds a record's JSON is held to: what JSON's and Kafka's readers can take back as it
was written (finite numbers, integers within 64 bits, Unicode keys), and how deep and large
an event's free-form parts may be."""

import math
from collections.abc import Iterator
from typing import Any

# A key's, or an id's, most characters.
MAX_ID_CHARS = 256


def json_integer(value: object) -> object:
    """Refuse what pydantic would turn into an int but JSON Schema's `integer` is not: `true`
    and `"3"` (3.0 is the number 3 in JSON and stays accepted)."""
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON integer, not a boolean or a string")
    return value


MAX_METADATA_DEPTH = 8
MAX_METADATA_ITEMS = 1000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _nodes(value: Any) -> Iterator[tuple[Any, int]]:
    # Every value inside `value`, itself included, with its depth (1 for `value`); iterative,
    # and lazy, so a check can stop a deep structure before it is walked.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def _check_number(node: Any) -> None:
    if isinstance(node, float) and not math.isfinite(node):
        raise ValueError("numbers must be finite (JSON has no NaN or Infinity)")
    if isinstance(node, int) and not _INT64_MIN <= node <= _INT64_MAX:
        # What Kafka's consumers in Java or Go can read back as a number (and orjson write).
        raise ValueError("integers must fit in 64 bits (-2**63 to 2**63 - 1)")


def check_json_numbers(value: Any) -> Any:
    """Return `value` if every number in it is finite and every integer fits in 64 bits
    (Python's JSON parser takes `NaN` and integers of any size; neither can be stored as
    they were sent)."""
    for node, _ in _nodes(value):
        _check_number(node)
    return value


def check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Return `metadata` if it is plain JSON within bounds: at most `MAX_METADATA_DEPTH` levels
    of objects/arrays, `MAX_METADATA_ITEMS` keys and array items in all, keys of at most
    `MAX_ID_CHARS` characters of Unicode text, finite numbers only (JSON has no NaN or
    Infinity), integers within 64 bits."""
    if _flat_and_plain(metadata):
        return metadata
    items = 0
    for node, depth in _nodes(metadata):
        _check_number(node)
        if not isinstance(node, dict | list):
            continue
        if depth > MAX_METADATA_DEPTH:
            raise ValueError(f"nested deeper than {MAX_METADATA_DEPTH} levels")
        items += len(node)
        if items > MAX_METADATA_ITEMS:
            raise ValueError(f"more than {MAX_METADATA_ITEMS} keys and items in all")
        for key in node if isinstance(node, dict) else ():
            if len(key) > MAX_ID_CHARS:
                raise ValueError(f"a key is longer than {MAX_ID_CHARS} characters")
            if not _is_unicode(key):
                # Serializers would replace it silently: the record would differ.
                raise ValueError("a key is no Unicode text (surrogates not allowed)")
    return metadata


def _flat_and_plain(metadata: dict[str, Any]) -> bool:
    # The common case in one pass: an object of text, booleans, nulls and numbers within the
    # bounds, keys short and ASCII. Anything else (nested, or wrong: the error to raise) is
    # the walk's of `check_metadata`.
    if len(metadata) > MAX_METADATA_ITEMS:
        return False
    for key, value in metadata.items():
        if len(key) > MAX_ID_CHARS or not key.isascii():
            return False
        kind = type(value)
        if kind is int:
            if not _INT64_MIN <= value <= _INT64_MAX:
                return False
        elif kind is float:
            if not math.isfinite(value):
                return False
        elif kind is not str and kind is not bool and value is not None:
            return False
    return True


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return `messages` if they have the shape of `gen_ai.input.messages` /
    `gen_ai.output.messages` / `gen_ai.system_instructions` (a list of objects; a message with
    `role` names it as text and its `parts` is a list of objects with a text `type`) and are
    plain JSON within the bounds of `check_metadata`."""
    check_metadata({"messages": messages})
    for index, message in enumerate(messages):
        if "role" in message and not isinstance(message["role"], str):
            raise ValueError(f"message {index}: role must be a string")
        parts = message.get("parts", [])
        if not isinstance(parts, list) or not all(
            isinstance(part, dict) and isinstance(part.get("type"), str) for part in parts
        ):
            raise ValueError(f"message {index}: parts must be a list of objects with a 'type'")
    return messages
