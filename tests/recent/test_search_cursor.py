"""The cursors of GET /audit/records (unit, no broker): they continue only their own query and
refuse any change."""

import base64
import hashlib
import hmac

import orjson
import pytest

from app.recent.search_cursor import CursorCodec, CursorError, CursorState, query_id

STATE = CursorState(1_000, 2_000, {0: (5, 90), 3: (70, 12)})
QUERY = query_id(
    user_id="user-1", since=None, until=None, model=None, event_id=None, order="newest"
)


def test_unit_a_cursor_gives_back_its_state() -> None:
    codec = CursorCodec(b"k" * 32)
    assert codec.decode(codec.encode(QUERY, STATE), QUERY) == STATE


def test_unit_the_query_id_covers_every_filter_and_the_order() -> None:
    base = {"user_id": "u", "since": None, "until": None, "model": None, "event_id": None}
    ids = {
        query_id(**{**base, "order": "newest"}),
        query_id(**{**base, "order": "oldest"}),
        query_id(**{**base, "user_id": "v", "order": "newest"}),
        query_id(**{**base, "model": "m", "order": "newest"}),
        query_id(**{**base, "since": "2026-01-01T00:00:00Z", "order": "newest"}),
    }
    assert len(ids) == 5


def test_unit_a_cursor_of_another_query_is_refused() -> None:
    codec = CursorCodec(b"k" * 32)
    cursor = codec.encode(QUERY, STATE)
    with pytest.raises(CursorError, match="another query"):
        codec.decode(cursor, query_id(user_id="user-2"))


def test_unit_an_altered_cursor_is_refused() -> None:
    codec = CursorCodec(b"k" * 32)
    body, tag = codec.encode(QUERY, STATE).split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["r"][0][1] = 0  # read partition 0 from its start again
    forged = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
    with pytest.raises(CursorError, match="altered"):
        codec.decode(f"{forged}.{tag}", QUERY)


def test_unit_a_cursor_made_under_another_secret_is_refused() -> None:
    cursor = CursorCodec(b"a" * 32).encode(QUERY, STATE)
    with pytest.raises(CursorError, match="RG_AUDIT_SEARCH_CURSOR_SECRET"):
        CursorCodec(b"b" * 32).decode(cursor, QUERY)


@pytest.mark.parametrize("cursor", ["", "x", "a.b", "!!!.???", "é.é", "eyJ2IjoxfQ"])
def test_unit_what_is_no_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(CursorError):
        CursorCodec(b"k" * 32).decode(cursor, QUERY)


def test_unit_a_well_signed_payload_of_the_wrong_shape_is_refused() -> None:
    secret = b"k" * 32
    codec = CursorCodec(secret)
    for payload in (b"[]", b'{"v": 2}', b'{"v": 1, "q": "%s"}' % QUERY.encode(), b"not json"):
        tag = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
        cursor = ".".join(
            base64.urlsafe_b64encode(part).rstrip(b"=").decode() for part in (payload, tag)
        )
        with pytest.raises(CursorError):
            codec.decode(cursor, QUERY)
