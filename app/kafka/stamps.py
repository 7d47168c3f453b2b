"""Event ids and times as records carry them: UUIDv7 ids, ISO-8601 UTC text, Kafka's epoch
milliseconds.

An id and a time are made for every event that arrives without them, a batch's hundred at a
time, so both are made without the general-purpose objects (`uuid.UUID`, `datetime`) that
cost most of their making: an id's random bits are taken from a pool filled by one
`os.urandom` call per 512 ids (a system call per id was the larger part of its cost), and the
date and time of day of the current second are formatted once per second."""

import os
import threading
import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Random bytes per id: 74 bits of it are used (RFC 9562's rand_a and rand_b).
_RANDOM_BYTES = 10
_POOL_BYTES = 512 * _RANDOM_BYTES
_MILLIS_MASK = (1 << 48) - 1


class _RandomPool:
    """Bytes of `os.urandom`, handed out once each; a forked child starts with a pool of its
    own (one inherited from its parent would repeat the parent's ids)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def take(self) -> bytes:
        """The next `_RANDOM_BYTES` unused random bytes."""
        with self._lock:
            at = self._at
            if at + _RANDOM_BYTES > len(self._pool):
                self._pool = os.urandom(_POOL_BYTES)
                at = 0
            self._at = at + _RANDOM_BYTES
            return self._pool[at : at + _RANDOM_BYTES]


_random = _RandomPool()


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562): millisecond time first, so ids sort by creation time; then 74
    random bits from the operating system's generator."""
    millis = time.time_ns() // 1_000_000
    raw = bytearray((millis & _MILLIS_MASK).to_bytes(6, "big"))
    raw += _random.take()
    raw[6] = 0x70 | raw[6] & 0x0F  # version 7
    raw[8] = 0x80 | raw[8] & 0x3F  # RFC 9562 variant
    digits = raw.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


# The current second and its date and time of day as text ("2026-01-31T12:00:00").
_second: tuple[int, str] = (-1, "")


def utc_now_iso() -> str:
    """Now, as ISO-8601 UTC with microseconds and a `Z` (as `format_utc` writes a time)."""
    global _second  # noqa: PLW0603 - one cached second for the process
    second, micros = divmod(time.time_ns() // 1000, 1_000_000)
    cached, text = _second
    if second != cached:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (second, text)
    return f"{text}.{micros:06d}Z"


def parse_utc(text: str, name: str = "time") -> datetime:
    """An ISO-8601 / RFC 3339 time (`T` and `Z` in either case; no offset means UTC) as an
    aware datetime in UTC; `ValueError` naming `name` when it is none or outside the calendar."""
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        raise ValueError(f"{name} must be an ISO-8601 time, e.g. 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is a valid string but precedes the first day in UTC.
        raise ValueError(f"{name} must be between the years 1 and 9999 in UTC") from None


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since 1970 (UTC) of an aware `moment`, counted exactly."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def utc_of_epoch_ms(timestamp_ms: int) -> str | None:
    """`format_utc` of a Kafka timestamp; None beyond Python's calendar (Kafka takes any
    64-bit value, Python's years end with 9999)."""
    try:
        # Integer arithmetic: a float of milliseconds loses microseconds this far out.
        return format_utc(_EPOCH + timedelta(milliseconds=timestamp_ms))
    except OverflowError:
        return None


def format_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`; a naive time is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
