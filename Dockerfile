# ractogateway-kafka as a container image: `make image` (podman here, docker elsewhere), or
# `docker build -t ractogateway-kafka .` with any Docker/BuildKit. docs/deploy.md "The image".
#
# Two stages: uv builds the virtual environment from uv.lock in the builder; the runtime stage
# gets only that environment (the app is installed in it as a package, not as source).

FROM python:3.11-slim AS builder

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/

# A CA bundle for the build's downloads where TLS is intercepted (make image mounts the host's);
# unset by default, and it never reaches the runtime stage.
ARG SSL_CERT_FILE
# The base image's Python (python3 on PATH: /usr/local/bin in the official image), never a
# downloaded one; bytecode compiled now, since the root filesystem is read-only at run time.
ENV UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src

# The dependencies alone first: this layer is rebuilt only when uv.lock changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=/src/uv.lock \
    --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    uv sync --frozen --no-dev --no-editable --no-install-project

# Then the app, installed into the environment as a wheel (--no-editable): the runtime stage
# needs no source tree.
COPY pyproject.toml uv.lock README.md ./
COPY app ./app
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable \
    && mkdir -p /state


FROM python:3.11-slim

# Set by make image from app/__init__.py; the default is for a plain `docker build` (a test
# keeps it equal to app.__version__). SOURCE: where the source lives, if the builder says so.
ARG VERSION=0.2.0
ARG SOURCE=""
LABEL org.opencontainers.image.title="ractogateway-kafka" \
      org.opencontainers.image.description="Audit-trail sidecar for AI/LLM applications: prompts and responses written durably to Apache Kafka over HTTP." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}"

# Owned by root: the service can read its code, not change it.
COPY --from=builder /app/.venv /app/.venv
# The one writable place: the spool and any temporary file (the root filesystem may be mounted
# read-only, as Kubernetes' readOnlyRootFilesystem does).
COPY --from=builder --chown=10001:10001 /state /var/lib/ractogateway-kafka

# TMPDIR and SQLITE_TMPDIR: Python's and SQLite's temporary files go to the volume too.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/var/lib/ractogateway-kafka \
    SQLITE_TMPDIR=/var/lib/ractogateway-kafka \
    RG_HOST=0.0.0.0 \
    RG_PORT=8080 \
    RG_SPOOL_DIR=/var/lib/ractogateway-kafka/spool

# No .env is read from here (the settings come from the environment).
WORKDIR /app
USER 10001:10001
VOLUME ["/var/lib/ractogateway-kafka"]
EXPOSE 8080

# `probe` GETs /healthz on RG_HOST:RG_PORT with the standard library only: no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["ractogateway-kafka", "probe", "live"]

# SIGTERM: /readyz turns 503 for RG_SHUTDOWN_DRAIN_S, in-flight requests finish (at most
# RG_SHUTDOWN_TIMEOUT_S), the producer flushes, the process exits 0.
STOPSIGNAL SIGTERM
CMD ["ractogateway-kafka", "serve"]
