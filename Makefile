# ractogateway-kafka — every command installs what it needs first.
#   make install the venv (uv, the locked dependencies) and the Apache Kafka jars
#   make run     embedded Apache Kafka + the API on http://127.0.0.1:8080
#                (other ports: make run KAFKA_PORT=9093 RG_PORT=8081)
#   make registry  the embedded Schema Registry (Apicurio) alone; prints its url= line
#   make test    the whole suite against a real broker
#   make test-fast  the broker-free tests (pytest -m "not broker"): no Java, no Kafka, under a minute
#   make lint    ruff, mypy --strict on app and tests, the layers of app (lint-imports), hadolint on
#                the Dockerfile, helm lint on the chart, one version everywhere (.ci/versions.py)
#   make dist    the wheel and the sdist in dist/ (uv build; DIST=folder for another place):
#                pip install dist/ractogateway_kafka-*.whl installs the service alone
#   make image   the container image ractogateway-kafka:<version> (podman here, docker elsewhere)
#   make openapi write openapi.json from the app (a test fails when it is stale)
#   make bench   load benchmark: the HTTP lines beside raw aiokafka, confluent-kafka and the JVM
#                client, results in bench/results/ (ARGS=--quick for a short run)
#   make bench-quick  the short run: fewer lines, 5 s each, no integrity pair
#   make bench-verify  records/s of `verify`: in memory on one core, and read from a real topic
#   make bench-bundle  records/s of `export` (an evidence bundle) and `verify --bundle`
#   make bench-redaction  redaction's p50/p99 for a 4 KB prompt (no broker)
#   make bench-otlp  GenAI spans/s over OTLP/HTTP protobuf against POST /audit/batch
#   make bench-proofs  the proof index: CPU per record, proof latency and size, and a cold rebuild
#                read from Kafka (ARGS="--records N --rebuild N")
#   make bench-witness fork trials against real witnesses, time to quorum, rate with/without them
#   make verifier  the Go verifier of evidence bundles (verifier/) as one static binary,
#                .cache/tools/bin/rg-verify (docs/auditors.md; make test builds it too)
#   make bench-goverifier  records/s of the Go and the Python bundle verifiers on one core
#   make bench-proxy  what the recording proxy adds to a chat completion: latency at 1 and 32
#                connections, time to first byte of a stream, CPU per call (ARGS=--seconds N)
#   make bench-search  GET /audit/records: one user's day p50/p99 at 1 M records, window records/s
#   make helm    build the pinned helm into .cache/tools/bin (the chart checks in make test use it)
#   make openai-js  the official OpenAI JavaScript SDK (npm, pinned by tests/tools/openai-js) into
#                .cache/tools/node/openai-js (the recording proxy's tests run it; make test installs it)
#   make chromium  install Debian's chromium when missing (the /ui browser tests drive it)
#   make clean   remove .venv, .cache/tools (uv, helm) and the lint and test caches (not the jars,
#                the registry or the broker data in var/)

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9

TOOLS := .cache/tools
UV := $(TOOLS)/bin/uv
VENV := .venv
SYNCED := $(VENV)/.synced
KAFKA_VERSION := 3.9.1
# The embedded broker's client port for `make run` (RG_PORT, from the command line or the
# environment, is the API's).
KAFKA_PORT ?= 9092
# helm has no package in the registries we use: it is built from source with the machine's Go
# (default Go caches, ~1 GB and ~3 min cold, ~1 s warm).
HELM_VERSION := v3.22.0
HELM := $(TOOLS)/bin/helm
HELM_STAMP := $(TOOLS)/.helm-$(HELM_VERSION)
# Go from PATH, else where its official archive installs it (often not on a non-login PATH).
GO ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go))

# The Apache Kafka jars live in the project (git-ignored), not in the user's home.
export RG_EMBEDDED_CACHE_DIR ?= $(CURDIR)/.cache/kafka
# So does the embedded Schema Registry (Apicurio, ~160 MB) the tests of schema contracts use.
export RG_REGISTRY_CACHE_DIR ?= $(CURDIR)/.cache/registry
# uv uses the machine's Python; it never downloads one.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

JARS := $(RG_EMBEDDED_CACHE_DIR)/kafka_2.13-$(KAFKA_VERSION)/.complete
export RG_REGISTRY_VERSION ?= 3.3.3
REGISTRY_VERSION := $(RG_REGISTRY_VERSION)
REGISTRY := $(RG_REGISTRY_CACHE_DIR)/apicurio-registry-$(REGISTRY_VERSION)/.complete

.PHONY: registry run test test-fast lint dist image openapi openai-js bench bench-quick bench-verify bench-redaction bench-proofs bench-bundle bench-witness bench-goverifier verifier bench-search bench-otlp bench-proxy install helm chromium openssl clean help

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(SYNCED): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	@touch $@

$(JARS): | $(SYNCED)
	$(VENV)/bin/ractogateway-kafka broker --download-only

$(REGISTRY): | $(SYNCED)
	$(VENV)/bin/ractogateway-kafka registry --download-only

# The stamp names the version: a new HELM_VERSION makes a new stamp, newer than the binary, and
# helm is rebuilt (as it is when the binary is missing). The tests run $(HELM).
$(HELM_STAMP):
	@mkdir -p $(TOOLS)/bin
	@rm -f $(TOOLS)/.helm-*
	@touch $@

$(HELM): $(HELM_STAMP)
	@test -n "$(GO)" || { echo "make helm: Go not found (not on PATH, no /usr/local/go); install Go to build helm $(HELM_VERSION) with go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)" >&2; exit 1; }
	GOBIN=$(CURDIR)/$(TOOLS)/bin $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@touch $@

helm: $(HELM)

# The official OpenAI JavaScript SDK for tests/api/test_openai_sdks.py, with the machine's Node.js
# and npm from the npm registry, at the versions package-lock.json pins; a changed lock file
# reinstalls it. Node resolves `openai` from the test's script through a node_modules link here.
OPENAI_JS := $(TOOLS)/node/openai-js
OPENAI_JS_STAMP := $(OPENAI_JS)/.installed

$(OPENAI_JS_STAMP): tests/tools/openai-js/package.json tests/tools/openai-js/package-lock.json
	@command -v npm >/dev/null || { echo "make openai-js: npm not found; install Node.js 20+ with npm" >&2; exit 1; }
	@mkdir -p $(OPENAI_JS)
	cp $^ $(OPENAI_JS)/
	cd $(OPENAI_JS) && npm ci --no-audit --no-fund
	@touch $@

openai-js: $(OPENAI_JS_STAMP)

# Headless Chromium for tests/api/test_ui_browser.py (Playwright drives it by its path; it never
# downloads a browser): the distribution's package, installed by the script only when
# `chromium` is not on PATH (~25 s, as root).
chromium:
	.ci/chromium.sh

# The tests' RFC 3161 timestamp authority is OpenSSL 3's `openssl ts` (tests/helpers/tsa.py).
openssl:
	command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }

install: $(SYNCED) $(JARS)

run: install
	$(VENV)/bin/ractogateway-kafka run --port $(KAFKA_PORT)

registry: $(REGISTRY)
	$(VENV)/bin/ractogateway-kafka registry

test: install $(REGISTRY) $(HELM) $(OPENAI_JS_STAMP) chromium openssl
	$(VENV)/bin/pytest

# The chart's tests are broker-free but run helm: it is built first.
test-fast: $(SYNCED) $(HELM) openssl
	$(VENV)/bin/pytest -m "not broker"

lint: $(SYNCED) $(HELM)
	$(VENV)/bin/ruff check app tests bench .ci
	$(VENV)/bin/ruff format --check app tests bench .ci
	$(VENV)/bin/mypy --strict app tests .ci/versions.py
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/hadolint Dockerfile
	$(HELM) lint --strict helm/ractogateway-kafka
	$(VENV)/bin/python .ci/versions.py

# The sdist, then the wheel built from it (uv build; the build backend, hatchling, comes from the
# package index into uv's cache). Packages of earlier versions are removed first, so the folder
# holds one wheel: tests/deploy/test_dist.py installs it with plain pip into a fresh venv.
DIST ?= dist
dist: $(UV)
	rm -f $(DIST)/ractogateway_kafka-*
	$(UV) build --out-dir $(DIST)

# podman (installed when missing) and its base images are set up by the script; see its header.
# The pinned uv of $(UV) goes into the image too.
image: $(UV)
	.ci/image.sh

openapi: $(SYNCED)
	$(VENV)/bin/ractogateway-kafka openapi

# wrk drives the HTTP lines; installed from the distribution's packages when missing. The
# bench group (confluent-kafka, the librdkafka line) is added here only: make test, make lint and
# the image never install it. kafka-tools (ProducerPerformance) comes through Maven on first use.
ARGS ?=
bench: install
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(UV) sync --frozen --group bench
	$(VENV)/bin/python -m bench.run $(ARGS)

bench-quick:
	$(MAKE) bench ARGS=--quick

bench-verify: install
	$(VENV)/bin/python -m bench.verify

bench-otlp: install
	$(VENV)/bin/python -m bench.otlp $(ARGS)

bench-redaction: $(SYNCED)
	$(VENV)/bin/python -m bench.redaction

bench-bundle: install
	$(VENV)/bin/python -m bench.bundle

bench-proofs: $(SYNCED)
	$(VENV)/bin/python -m bench.proofs $(ARGS)

bench-witness: $(SYNCED)
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(VENV)/bin/python -m bench.witness $(ARGS)

# The second verifier (Go, standard library and golang.org/x/mod): modules from the Go module
# proxy, pinned by verifier/go.sum; CGO off, so the binary runs on any Linux of its architecture.
VERIFIER := $(TOOLS)/bin/rg-verify

verifier:
	@mkdir -p $(TOOLS)/bin
	cd verifier && CGO_ENABLED=0 $(GO) build -trimpath -o $(CURDIR)/$(VERIFIER) .

bench-goverifier: verifier $(SYNCED)
	$(VENV)/bin/python -m bench.goverifier $(ARGS)

bench-proxy: install
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(VENV)/bin/python -m bench.proxy $(ARGS)

bench-search: $(SYNCED)
	$(VENV)/bin/python -m bench.search $(ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .hypothesis
