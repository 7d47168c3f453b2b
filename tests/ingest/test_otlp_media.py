"""OTLP/HTTP's media (app/ingest/otlp_media.py): encodings, content coding, bounds."""

import gzip
import subprocess
import sys

import pytest

from app.ingest import otlp_media


def test_unit_the_content_type_names_the_encoding() -> None:
    assert otlp_media.encoding_of("application/x-protobuf; charset=binary") == "protobuf"
    assert otlp_media.encoding_of("Application/JSON") == "json"
    with pytest.raises(otlp_media.OtlpMediaTypeError):
        otlp_media.encoding_of("text/plain")
    with pytest.raises(otlp_media.OtlpMediaTypeError):
        otlp_media.encoding_of(None)


def test_unit_gzip_is_inflated_within_the_limit() -> None:
    assert otlp_media.inflate(gzip.compress(b"abc"), "gzip", 3) == b"abc"
    with pytest.raises(otlp_media.OtlpBodyTooLargeError):
        otlp_media.inflate(gzip.compress(b"0" * 10_000), "gzip", 100)
    with pytest.raises(otlp_media.OtlpPayloadError):
        otlp_media.inflate(b"not gzip", "gzip", 100)
    with pytest.raises(otlp_media.OtlpMediaTypeError):
        otlp_media.inflate(b"x", "br", 100)


def test_unit_the_app_loads_no_protobuf_class_until_an_otlp_request() -> None:
    # The OTLP protobuf classes are ~5 MB of the service's memory, for a receiver many
    # deployments never use: taken on the first OTLP request, not with the app.
    probe = (
        "import sys\n"
        "from app.main import create_app\n"
        "from app.settings import Settings\n"
        "create_app(Settings(_env_file=None, kafka_bootstrap_servers=['127.0.0.1:9']))\n"
        "print(sorted(m for m in ('google.protobuf', 'opentelemetry.proto') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["[]"], done.stderr
