"""What `verify` reads from files it is given (app/cli/verification.py), called directly."""

from pathlib import Path

import pytest

from app.cli.trail import VerifyInputError
from app.cli.verification import bundle_keys, load_receipts

# Past the JSON parser's recursion limit: a file anyone may hand to `verify`.
DEEP = b"[" * 100_000


def test_unit_a_receipt_file_nested_too_deep_is_an_input_error(tmp_path: Path) -> None:
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(DEEP)
    with pytest.raises(VerifyInputError, match="not a readable JSON file"):
        load_receipts([receipt])


def test_unit_a_bundles_keys_nested_too_deep_are_an_input_error() -> None:
    with pytest.raises(VerifyInputError, match="cannot be read"):
        bundle_keys(DEEP)
