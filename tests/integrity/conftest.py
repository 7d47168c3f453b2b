from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cpv1check, witness


@pytest.fixture(scope="session")
def checkpoint_reader() -> Iterator[cpv1check.CheckpointReader]:
    """A reader of v1 checkpoints written in Go from the docs alone (built on first use)."""
    reader = cpv1check.CheckpointReader(cpv1check.build())
    yield reader
    reader.close()


@pytest.fixture(scope="session")
def witness_tools() -> Path:
    """litewitness and witnessctl (filippo.io/torchwood), built on first use: a real C2SP
    witness this project did not write. A failed build fails the tests that need it."""
    return witness.build()


@pytest.fixture
def make_witness(witness_tools: Path, tmp_path: Path) -> Iterator[witness.MakeWitness]:
    """Starts litewitnesses (`name`, our log's origin, our log's verifier key) in `tmp_path`;
    every one is stopped, its agent too, after the test."""
    started: list[witness.Litewitness] = []

    def make(name: str, origin: str, log_key: str) -> witness.Litewitness:
        folder = tmp_path / f"witness-{len(started)}"
        started.append(
            witness.Litewitness.create(folder, name=name, log_origin=origin, log_key=log_key)
        )
        return started[-1]

    yield make
    for one in started:
        one.close()


@pytest.fixture(scope="session")
def cosigcheck() -> Iterator[witness.CosigCheck]:
    """transparency-dev/formats' checkpoint reader with tlog-cosignature keys (built on first
    use): proves our cosigned notes in a verifier this project did not write."""
    checker = witness.CosigCheck(witness.build_cosigcheck())
    yield checker
    checker.close()
