"""What must hold before pytest imports any test module or the app (this file is loaded first)."""

import os
import sys

# Compiled modules, and pytest's rewritten test modules, are kept in `__pycache__` even where
# PYTHONDONTWRITEBYTECODE is set: without them every run compiles the whole suite again (the
# broker-free set's collection 13.8 s of CPU against 5.3 s), and every service process a test
# starts compiles the app anew.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
