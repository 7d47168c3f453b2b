"""The writer's side of the log of writers (app/integrity/announcer.py) with a stand-in chain
and a write that records what it is given (unit tests; the service's real writes to a broker
are in tests/api/test_integrity.py and tests/integrity/test_end_to_end.py)."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from app.integrity.announcer import WritersAnnouncer
from tests.helpers.polling import eventually
from tests.helpers.unit_chain import At, UnitChain


class Written:
    """The entries written, as (key, JSON); `fail` makes the next writes raise."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.fail = 0

    async def __call__(self, key: str, value: bytes) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("broker away")
        self.entries.append((key, json.loads(value)))

    def has(self, kind: tuple[str, int | None]) -> Callable[[], Awaitable[bool]]:
        """A check for `eventually`: whether an entry of this kind and size was written."""

        async def check() -> bool:
            return kind in self.kinds()

        return check

    def kinds(self) -> list[tuple[str, int | None]]:
        return [(e["kind"], e.get("size")) for _, e in self.entries]


async def test_unit_start_once_heads_when_advanced_and_stop_at_close() -> None:
    chain, written = UnitChain(), Written()
    announcer = WritersAnnouncer(chain, written, origin="o.test/log", interval_s=0.02)
    await announcer.started()
    await announcer.started()
    assert written.kinds() == [("start", None)]
    key, start = written.entries[0]
    assert key == chain.writer_id
    assert start["origin"] == f"o.test/log/writer/{chain.writer_id}"
    assert await announcer.head() is None  # nothing durable yet
    chain.head, chain.tree = At(4, "1f" * 32), b"\x2a" * 32
    entry = await announcer.head()
    assert entry is not None
    assert await announcer.head() is None  # not advanced since
    announcer.start()
    chain.head = At(6, "2f" * 32)
    await eventually(written.has(("head", 7)), timeout_s=10)
    await announcer.close()
    assert written.kinds() == [("start", None), ("head", 5), ("head", 7), ("stop", 7)]
    assert written.entries[-1][1]["root"] == "sha256:" + "2a" * 32


async def test_unit_a_failed_write_is_tried_again_and_a_stop_without_records_is_empty() -> None:
    chain, written = UnitChain(), Written()
    written.fail = 2
    announcer = WritersAnnouncer(chain, written, origin="o", interval_s=0.02)
    announcer.start()
    await eventually(written.has(("start", None)), timeout_s=10)
    assert written.fail == 0  # two failed attempts, then the start
    await announcer.close()
    assert written.kinds() == [("start", None), ("stop", 0)]
    # The empty tree's root: SHA-256 of nothing.
    assert written.entries[-1][1]["root"] == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
