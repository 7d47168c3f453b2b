"""A streamed answer's head taken from the upstream's header bytes (`answer_head`) is the head
the headers by name gave (`answer_headers`, then encoded as the response's head encodes them),
byte for byte; a head that is not all ASCII is left to the decoding path."""

from app.proxy.upstream import answer_head, answer_headers

_HEAD = [
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    (b"Transfer-Encoding", b"chunked"),
    (b"Connection", b"keep-alive"),
    (b"X-Request-Id", b"req_123"),
    (b"Set-Cookie", b"a=b"),
    (b"Date", b"Mon, 07 Dec 2026 23:00:00 GMT"),
    (b"Server", b"scripted"),
    (b"X-RG-Event-Id", b"forged"),
    (b"Cache-Control", b"no-cache"),
    (b"Vary", b"Origin"),
    (b"vary", b"Accept"),
    (b"OpenAI-Processing-Ms", b"12"),
]


def _by_name(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    kept = answer_headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in kept.items()]


def test_unit_the_head_from_bytes_is_the_head_by_name() -> None:
    head = answer_head(_HEAD)
    assert head == _by_name(_HEAD)
    assert head == [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"x-request-id", b"req_123"),
        (b"cache-control", b"no-cache"),
        (b"vary", b"Origin, Accept"),
        (b"openai-processing-ms", b"12"),
    ]


def test_unit_a_head_not_all_ascii_is_left_to_the_decoding_path() -> None:
    assert answer_head([*_HEAD, (b"x-note", "caf\u00e9".encode())]) is None
    assert answer_head([(b"x-n\xe9", b"1")]) is None
    assert answer_head([]) == []
