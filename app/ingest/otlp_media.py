"""OTLP/HTTP's media: the encodings a request may come in, its content coding, and the errors a
body that is none of them gets. Apart from the protobuf classes (app/ingest/otlp.py), so that the
routes and the body limit in front of them know an OTLP request without loading them: they are
about 5 MB of the service's memory, taken on the first OTLP request."""

import zlib
from typing import Final, Literal

Encoding = Literal["protobuf", "json"]
PROTOBUF_TYPE: Final = "application/x-protobuf"
JSON_TYPE: Final = "application/json"


class OtlpPayloadError(ValueError):
    """A body that is no OTLP request of the expected kind (answered 400)."""


class OtlpMediaTypeError(ValueError):
    """A content type OTLP/HTTP does not define (answered 415)."""


def encoding_of(content_type: str | None) -> Encoding:
    """The OTLP encoding of a `Content-Type`; `OtlpMediaTypeError` for any other."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == PROTOBUF_TYPE:
        return "protobuf"
    if media == JSON_TYPE:
        return "json"
    raise OtlpMediaTypeError(
        f"Content-Type must be {PROTOBUF_TYPE} or {JSON_TYPE}, not {media or 'none'!r}"
    )


def inflate(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """`body` decoded by its `Content-Encoding` (none or gzip), at most `max_bytes` long."""
    coding = (content_encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding != "gzip":
        raise OtlpMediaTypeError(f"Content-Encoding must be gzip or none, not {coding!r}")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        # Bounded: a small gzip bomb must not become gigabytes in memory.
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise OtlpPayloadError(f"the gzip body cannot be inflated: {exc}") from None
    if len(out) > max_bytes:
        raise OtlpBodyTooLargeError(
            f"the inflated body is larger than {max_bytes} bytes (RG_MAX_BODY_BYTES)"
        )
    if not inflater.eof:
        raise OtlpPayloadError("the gzip body is cut short")
    return out


class OtlpBodyTooLargeError(ValueError):
    """An inflated body above the limit (answered 413)."""


def media_type(encoding: Encoding) -> str:
    """The `Content-Type` of an answer in `encoding`."""
    return PROTOBUF_TYPE if encoding == "protobuf" else JSON_TYPE
