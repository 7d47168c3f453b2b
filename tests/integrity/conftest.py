from collections.abc import Iterator

import pytest

from tests.helpers.tlog import TlogCheck, build


@pytest.fixture(scope="session")
def tlogcheck() -> Iterator[TlogCheck]:
    """Go's sumdb/tlog behind a pipe (built on first use)."""
    checker = TlogCheck(build())
    yield checker
    checker.close()
