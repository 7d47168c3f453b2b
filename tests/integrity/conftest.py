from collections.abc import Iterator

import pytest

from tests.helpers import cpv1check


@pytest.fixture(scope="session")
def checkpoint_reader() -> Iterator[cpv1check.CheckpointReader]:
    """A reader of v1 checkpoints written in Go from the docs alone (built on first use)."""
    reader = cpv1check.CheckpointReader(cpv1check.build())
    yield reader
    reader.close()
