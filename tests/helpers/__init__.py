"""Helpers the tests share: Kafka readers, process runners, poll loops, load generators.

Fixtures live in the conftest files; everything else a test imports lives here, by subject."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
