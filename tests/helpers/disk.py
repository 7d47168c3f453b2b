"""Small real filesystems, and filling them."""

import contextlib
import os
from pathlib import Path


def fill(directory: Path) -> Path:
    """Write a file in `directory` until its filesystem has not one byte left; the file."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (b"\0" * 65536, b"\0" * 512, b"\0"):
            with contextlib.suppress(OSError):
                while True:
                    out.write(chunk)
    free = os.statvfs(directory)
    assert free.f_bavail == 0, f"{free.f_bavail} blocks still free in {directory}"
    return filler
