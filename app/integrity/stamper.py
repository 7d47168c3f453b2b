"""Asks RFC 3161 timestamp authorities for tokens over the log of writers (docs/integrity.md,
"Trusted time"; the format in app/integrity/timestamp.py).

Every RG_AUDIT_TSA_INTERVAL_S, when the writers' tree grew since the last token, a note of it
is signed anew (so the note's own time and the token's genTime are a request apart, which is
what `verify` compares) and stamped by the first authority of RG_AUDIT_TSA_URLS that answers
with a token that checks (RG_AUDIT_TSA_CA_FILE); the token goes to the checkpoints topic keyed
`timestamps`. An authority that is down or answers wrong costs a warning and a failure counted
against it, never a write: the next token, over a later note, covers everything before.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from cryptography import x509

from app.integrity.timestamp import (
    MAX_BYTES,
    TimestampError,
    TimestampRecord,
    check_reply,
    note_sha256,
    stamp_time,
    timestamp_query,
)
from app.integrity.writers import WritersNote, writers_log
from app.logs import RepeatedFailure
from app.tasks import BackgroundTask

logger = logging.getLogger(__name__)

# POSTs a TimeStampReq to an authority's URL and returns its answer's body; raises on failure.
Post = Callable[[str, bytes], Awaitable[bytes]]
# Writes one record to the checkpoints topic (keyed `timestamps`), once acknowledged.
Write = Callable[[bytes], Awaitable[None]]
# How long one authority may take to answer: kept below `verify`'s default skew (10 s), so a
# token's genTime is within it of the note's time.
REQUEST_TIMEOUT_S = 5.0


class NoteSource(Protocol):
    """Where the notes of the log of writers come from (app/recent/proofs.py's reader)."""

    def writers_size(self) -> int: ...

    async def sign_writers_now(self) -> WritersNote | None: ...


class AuthorityClient:
    """POSTs a TimeStampReq over HTTP as RFC 3161 section 3.4 says (content types
    application/timestamp-query and -reply); the proxy settings of the environment are not
    used (an authority is named by its URL)."""

    def __init__(self) -> None:
        import httpx  # noqa: PLC0415 - only with authorities: the service loads no client else

        self._client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, trust_env=False)

    async def post(self, url: str, query: bytes) -> bytes:
        """The body of the authority's answer; TimestampError when it is not one."""
        response = await self._client.post(
            url,
            content=query,
            headers={
                "content-type": "application/timestamp-query",
                "accept": "application/timestamp-reply",
            },
        )
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code != 200 or kind != "application/timestamp-reply":
            raise TimestampError(f"HTTP {response.status_code} {kind or 'without a type'}")
        if len(response.content) > MAX_BYTES:
            raise TimestampError(f"an answer of {len(response.content)} bytes")
        return response.content

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()


class NoTimestampError(Exception):
    """No authority gave a token that checks; the message says what each did."""


class Stamper:
    """Stamps the log of writers every `interval_s` (see the module docstring)."""

    def __init__(
        self,
        source: NoteSource,
        write: Write,
        post: Post | None = None,
        *,
        urls: Sequence[str],
        roots: list[x509.Certificate],
        name: str,
        interval_s: float,
    ) -> None:
        self._source = source
        self._write = write
        # Without a `post` given (the tests' way in), an HTTP client of its own.
        self._client: AuthorityClient | None = None
        if post is None:
            self._client = AuthorityClient()
            post = self._client.post
        self._post = post
        self.urls = list(urls)
        self._roots = roots
        self._origin = writers_log(name)
        self._interval_s = interval_s
        self._task = BackgroundTask("timestamps", self._run)
        self._failures = RepeatedFailure()
        self.stamped_size = 0  # the size of the tree the last token covers
        self.tokens = 0
        self.failures: dict[str, int] = dict.fromkeys(self.urls, 0)
        self._last_token: float | None = None  # monotonic

    def start(self) -> None:
        """Stamp in the background."""
        self._task.start()

    async def close(self) -> None:
        """Stop stamping."""
        await self._task.close()
        if self._client is not None:
            await self._client.aclose()

    def last_token_age_s(self) -> float | None:
        """Seconds since the last token was kept; None before the first."""
        return None if self._last_token is None else time.monotonic() - self._last_token

    async def stamp(self) -> TimestampRecord | None:
        """One round: a token over a fresh note when the tree grew since the last token, kept
        on the topic; None when there was nothing new. NoTimestampError when no authority gave
        one; what signing or writing raised, as it is."""
        size = self._source.writers_size()
        if size == 0 or size <= self.stamped_size:
            return None
        note = await self._source.sign_writers_now()
        if note is None:
            return None
        imprint = note_sha256(note.note)
        query = timestamp_query(note.note)
        said: list[str] = []
        for url in self.urls:
            try:
                reply = await asyncio.wait_for(self._post(url, query.der), REQUEST_TIMEOUT_S)
                stamp = check_reply(reply, imprint, self._roots, nonce=query.nonce)
            except Exception as exc:  # down, slow, or a token that does not check
                self.failures[url] = self.failures.get(url, 0) + 1
                said.append(f"{url}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            record = TimestampRecord(
                self._origin,
                note.size,
                note.root,
                imprint.hex(),
                note.time,
                url,
                query.nonce,
                reply,
                stamp_time(stamp),
            )
            await self._write(record.to_bytes())
            self.stamped_size = note.size
            self.tokens += 1
            self._last_token = time.monotonic()
            return record
        raise NoTimestampError("; ".join(said) or "no authority")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.stamp()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round tries again, over a later note
                left_out = self._failures.due()
                if left_out is not None:
                    logger.warning(
                        "no timestamp for the log of writers (size %d, last token covers %d): %s%s",
                        self._source.writers_size(),
                        self.stamped_size,
                        exc,
                        f" ({left_out} more failed rounds since the last line)" if left_out else "",
                    )
            else:
                self._failures.reset()
