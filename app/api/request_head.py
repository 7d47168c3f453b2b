"""Bounds on the head of every HTTP request (URL and headers), enforced while it is parsed.

uvicorn's httptools protocol keeps every header line it is sent, however many and however
long, before the app sees any of them; one client could make the service hold megabytes per
connection. `HeadBoundedProtocol` counts while parsing and answers 431 with the contract's
error body as soon as a bound is passed, then closes the connection. A request it cannot parse
at all gets a 400 with the same body (uvicorn's own answer is plain text). Trailer fields (after
a chunked body) count against the same bounds and are dropped: they never reach the app.
"""

import logging
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.api.errors import NO_SNIFF, error_bytes
from app.errors import BadRequestError, HeadersTooLargeError, ServiceError, problem_for
from app.logs import FIELDS

logger = logging.getLogger(__name__)


# One read of the event loop (asyncio reads at most 256 KiB at a time).
_READ_ALLOWANCE = 256 * 1024


class HeadBoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol allowing at most `max_headers` header lines and
    `max_head_bytes` bytes of URL, header names and values per request; `bounded_protocol`
    makes one with the settings' values."""

    max_headers: ClassVar[int] = 100
    max_head_bytes: ClassVar[int] = 32 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_seen = 0
        self._head_bytes = 0
        self._refusal: HeadersTooLargeError | None = None
        self._in_head = True
        self._unfinished = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # httptools holds a header line until it ends, so a line that never ends is
        # caught here: raw bytes received while a head is unfinished. A chunk may also
        # carry the end of the previous request, hence the allowance of one read.
        if self._in_head and self._refusal is None:
            self._unfinished += len(data)
            if self._unfinished > self.max_head_bytes + _READ_ALLOWANCE:
                self._refusal = HeadersTooLargeError(
                    f"the request head did not end within {self.max_head_bytes} bytes "
                    "(RG_MAX_HEADER_BYTES)"
                )
                self.send_400_response(self._refusal.message)

    def on_message_begin(self) -> None:
        self._headers_seen = 0
        self._head_bytes = 0
        self._in_head = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._unfinished = 0
        super().on_headers_complete()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), headers=0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), headers=1)
        if self._in_head:
            super().on_header(name, value)
        # Else a trailer field, after a chunked body: counted, then dropped. uvicorn added it
        # to the request's headers, where a key in it passed for one (RFC 9110 section 6.5.1:
        # trailers are not to be merged into the header section).

    def _count(self, size: int, *, headers: int) -> None:
        self._head_bytes += size
        self._headers_seen += headers
        if self._headers_seen > self.max_headers:
            self._refusal = HeadersTooLargeError(
                f"the request has more than {self.max_headers} header lines (RG_MAX_HEADERS)"
            )
        elif self._head_bytes > self.max_head_bytes:
            self._refusal = HeadersTooLargeError(
                f"the request's URL and headers exceed {self.max_head_bytes} bytes "
                "(RG_MAX_HEADER_BYTES)"
            )
        if self._refusal is not None:
            # Stops the parser; the protocol then answers with the refusal (431). A copy is
            # raised: the kept one then holds no traceback, whose frames hold this protocol.
            raise HeadersTooLargeError(self._refusal.message)

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser failure with a plain-text 400; here it is the
        # contract's body too, and the failure raised by the bounds is a 431.
        error: ServiceError = self._refusal or BadRequestError(
            f"not a valid HTTP/1.1 request ({msg})"
        )
        request_id = uuid.uuid4().hex
        logger.warning(
            "request refused with %d: %s",
            error.status,
            error.message,
            extra={FIELDS: {"status": error.status, "request_id": request_id}},
        )
        self._answer(error, request_id=request_id)

    def _answer(self, error: ServiceError, *, request_id: str) -> None:
        """Write the answer to `error` straight to the socket and close the connection: for
        requests the app never sees (or no longer can answer)."""
        problem = problem_for(error)
        body = error_bytes(problem, request_id)
        head = (
            f"HTTP/1.1 {problem.status} {HTTPStatus(problem.status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            f"x-request-id: {request_id}\r\n"
            + _header_lines({**problem.headers, **NO_SNIFF})
            + "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()


def _header_lines(headers: Mapping[str, str]) -> str:
    # Lower-case, as the server writes every other answer's headers.
    return "".join(f"{name.lower()}: {value}\r\n" for name, value in headers.items())


def bounded_protocol(*, max_headers: int, max_head_bytes: int) -> type[HeadBoundedProtocol]:
    """`HeadBoundedProtocol` allowing at most `max_headers` header lines and `max_head_bytes`
    bytes of URL, header names and values per request."""
    return type(
        "BoundedHttpToolsProtocol",
        (HeadBoundedProtocol,),
        {"max_headers": max_headers, "max_head_bytes": max_head_bytes},
    )
