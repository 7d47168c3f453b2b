"""The public surface of app.kafka."""

import ast
from pathlib import Path

import app.kafka

REFERENCE_NAMES = {
    "KafkaAuditEvent",
    "KafkaAuditLogger",
    "KafkaConsumerClient",
    "KafkaConsumerConfig",
    "KafkaMessage",
    "KafkaProduceResult",
    "KafkaProducerClient",
    "KafkaProducerConfig",
    "KafkaPublishRequest",
    "KafkaStreamConfig",
    "KafkaStreamProcessor",
}


def test_unit_every_reference_class_is_exported() -> None:
    assert set(app.kafka.__all__) >= REFERENCE_NAMES
    for name in app.kafka.__all__:
        assert getattr(app.kafka, name).__doc__, f"{name} has no docstring"


def test_unit_all_is_sorted() -> None:
    assert app.kafka.__all__ == sorted(app.kafka.__all__)


def test_unit_the_library_never_imports_the_web_stack() -> None:
    for module in Path(app.kafka.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in getattr(node, "names", [])]
                assert not any(n.split(".")[0] in {"fastapi", "starlette"} for n in names)
                assert not any(n.startswith("app.api") for n in names), module


REFERENCE_METHODS = {
    "KafkaProducerClient": {"publish", "publish_json", "flush", "close"},
    "KafkaConsumerClient": {"poll", "commit", "close"},
    "KafkaStreamProcessor": {"collect_batch", "process_once", "run"},
    "KafkaAuditLogger": {"topic", "log"},
}


def test_unit_reference_methods_exist() -> None:
    for cls, methods in REFERENCE_METHODS.items():
        missing = {m for m in methods if not hasattr(getattr(app.kafka, cls), m)}
        assert not missing, f"{cls} lacks {missing}"
