"""Freed big blocks leave the process (unit: no broker; the test process's own malloc)."""

import platform

from app.memory import return_big_blocks


def test_unit_glibcs_mmap_threshold_is_fixed_where_glibc_runs() -> None:
    # Elsewhere (musl, macOS) the call does nothing and says so; it never fails.
    done = return_big_blocks()
    assert done is (platform.libc_ver()[0] == "glibc")
