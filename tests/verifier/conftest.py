from pathlib import Path

import pytest

from tests.helpers import goverifier


@pytest.fixture(scope="session")
def go_verifier() -> Path:
    """The Go verifier of bundles, built on first use (modules from the Go module proxy)."""
    return goverifier.build()
