"""The process tuned for serving: freed memory goes back to the system, and the garbage
collector runs less often.

Memory (`return_big_blocks`; what a byte costs: `BODY_COST`, `RECORD_COST`). glibc's malloc
serves a block of 128 KiB or more with its own mmap, returned to the system when freed, but
each time such a block is freed it raises that threshold (up to 32 MiB), and later big blocks
come from the heap, which keeps what it once held. Request bodies and records of ~0.5 MB are
such blocks: after 400 of them at once the service stayed near its peak of a gigabyte. A fixed
threshold keeps them in mmap (a page fault per 4 KiB, microseconds per body).

The collector (`tune_for_serving`). By default Python's cyclic garbage collector runs a young
collection every 700 allocations of container objects, and every tenth of those an older one;
each request allocates hundreds (parsed JSON, models, coroutines, futures, header lists), so
under load the collector ran many times a second and walked every object still alive in the
younger generations. Most of a request's objects are freed by reference counting the moment it
ends; the collector is only needed for cycles. So: what was built to start the service
(modules, classes, schemas, the app) is frozen out of the collector's sight, and collections
run about a hundred times less often, which still bounds the cyclic garbage by a few thousand
requests' worth.
"""

import ctypes
import gc
import logging
import sys

logger = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value


def return_big_blocks() -> bool:
    """Fix glibc's mmap threshold at `MMAP_THRESHOLD`, so big freed blocks leave the process;
    False where that cannot be done (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if not done:
        logger.info("malloc's mmap threshold could not be fixed; freed memory may stay held")
    return done


# What a byte of a request body costs the service in memory while its request is worked on,
# as RG_MAX_IN_FLIGHT_BYTES counts it: the body until it is parsed, the parsed text, the
# record's canonical JSON and the producer's copy of it in its batch, at most three of them at
# once. Measured: 400 POST /audit of 0.5 MB at once (tests/faults/test_big_records.py) raised
# the peak RSS by 2.7 times the body bytes admitted.
BODY_COST = 3
# A record's byte until Kafka settles it: the record, and the producer's copy in its batch.
RECORD_COST = 2

# Allocations between young collections, and young collections between older ones.
THRESHOLDS = (100_000, 50, 100)


def tune_for_serving() -> None:
    """Freeze what exists now and collect less often; call once, after start-up objects exist."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
