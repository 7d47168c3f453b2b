"""Python's cyclic garbage collector, tuned for serving.

By default a young collection runs every 700 allocations of container objects, and every tenth
of those an older one; each request allocates hundreds (parsed JSON, models, coroutines,
futures, header lists), so under load the collector ran many times a second and walked every
object still alive in the younger generations. Most of a request's objects are freed by
reference counting the moment it ends; the collector is only needed for cycles. So: what was
built to start the service (modules, classes, schemas, the app) is frozen out of the
collector's sight, and collections run about a hundred times less often, which still bounds
the cyclic garbage by a few thousand requests' worth.
"""

import gc

# Allocations between young collections, and young collections between older ones.
THRESHOLDS = (100_000, 50, 100)


def tune_for_serving() -> None:
    """Freeze what exists now and collect less often; call once, after start-up objects exist."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
