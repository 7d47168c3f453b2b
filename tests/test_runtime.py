"""The process's tuning for serving (unit: no broker): freed big blocks leave the process (the
test process's own malloc), and the garbage collector's tuning (the interpreter's own)."""

import gc
import platform
from collections.abc import Iterator

import pytest

from app.runtime import THRESHOLDS, return_big_blocks, tune_for_serving


def test_unit_glibcs_mmap_threshold_is_fixed_where_glibc_runs() -> None:
    # Elsewhere (musl, macOS) the call does nothing and says so; it never fails.
    done = return_big_blocks()
    assert done is (platform.libc_ver()[0] == "glibc")


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_restored")
def test_unit_start_up_objects_are_frozen_and_collections_run_less_often() -> None:
    built_at_start = {"app": object()}
    tune_for_serving()
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() > 0
    # Frozen objects are out of every generation the collector walks.
    assert not any(built_at_start is o for o in gc.get_objects())
