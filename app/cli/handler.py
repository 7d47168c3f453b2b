"""Loading a stream handler named as `package.module:function`."""

import importlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the console script imports this module for its errors: it stays cheap
    from app.kafka.batches import Handler


class HandlerSpecError(ValueError):
    """A handler spec that does not name an importable callable."""


def load_handler(spec: str) -> "Handler":
    """Import `module:function`; the working directory is searched first, as `python -m` does."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise HandlerSpecError(f"handler must look like package.module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerSpecError(f"cannot import {module_name!r}: {exc}") from exc
    target: object = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise HandlerSpecError(f"{module_name!r} has no attribute {attribute!r}")
    if not callable(target):
        raise HandlerSpecError(f"{spec!r} is not callable")
    handler: Handler = target
    return handler
