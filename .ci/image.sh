#!/usr/bin/env bash
# Builds the container image from ./Dockerfile as ractogateway-kafka:<version> and :latest.
#
# With podman (the route here, and the one the image test takes):
#   1. installs podman, runc and slirp4netns from the distribution when they are missing
#      (Debian/Ubuntu, as root), and mmdebstrap and zstd when the stand-in base is to be made;
#   2. makes sure the two images the Dockerfile names exist locally, since there may be no
#      registry to pull from: an existing python:3.11-slim is used as is; otherwise a stand-in is
#      built from the machine's own Debian packages with mmdebstrap (Python 3.11 in /usr/bin) and
#      tagged docker.io/library/python:3.11-slim; the uv image is a FROM-scratch image holding the
#      uv binaries of the pinned PyPI wheel (the Makefile installs it in .cache/tools). Their
#      tarballs are cached in .cache/image/ (git-ignored);
#   3. podman build --pull=never --format docker (the default OCI format drops HEALTHCHECK).
# With a Docker engine and no podman: a plain `docker build` (it pulls the base images).
#
# Settings come from CONTAINERS_CONF=.ci/containers.conf (runc, rlimits the VM allows, slirp4netns).
# Usage: .ci/image.sh           build (each step skipped when its result exists)
#        .ci/image.sh --print   print the image name, build nothing
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

NAME=ractogateway-kafka
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' app/__init__.py)
IMAGE="$NAME:$VERSION"
# The uv the Dockerfile copies from; the same version the Makefile pins (a test checks).
UV_VERSION=$(sed -n 's|^COPY --from=ghcr.io/astral-sh/uv:\([0-9.]*\) .*|\1|p' Dockerfile)
UV_IMAGE="ghcr.io/astral-sh/uv:$UV_VERSION"
BASE_IMAGE=docker.io/library/python:3.11-slim
CACHE=$ROOT/.cache/image
HOST_CA=/etc/ssl/certs/ca-certificates.crt
export CONTAINERS_CONF=$ROOT/.ci/containers.conf

log() { printf 'image: %s\n' "$*" >&2; }

if [[ ${1:-} == --print ]]; then
    echo "$IMAGE"
    exit 0
fi

# A Docker engine elsewhere: the Dockerfile builds unchanged.
if ! command -v podman >/dev/null && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    log "docker build (no podman here)"
    exec docker build --build-arg "VERSION=$VERSION" -t "$IMAGE" -t "$NAME:latest" .
fi

# Installs the distribution's packages of the tools that are missing (Debian/Ubuntu, as root).
need() {
    local missing=()
    for tool in "$@"; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        log "missing: ${missing[*]}; install them (as root: apt-get install ${missing[*]}), then run make image"
        exit 1
    fi
    log "installing ${missing[*]}"
    if [[ -z ${APT_UPDATED:-} ]]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The stand-in for python:3.11-slim: Debian's Python 3.11 (bookworm) on a minimal Debian, from
# the apt sources this machine already uses. ~45 s the first time, 3 s from the cached tarball.
base_image() {
    if podman image exists "$BASE_IMAGE"; then
        return
    fi
    local tarball=$CACHE/python-3.11-slim.tar.zst
    if [[ ! -s $tarball ]]; then
        need mmdebstrap zstd
        log "building the stand-in $BASE_IMAGE with mmdebstrap (about a minute)"
        local sources=/etc/apt/sources.list.d/debian.sources suite
        [[ -f $sources ]] || sources=/etc/apt/sources.list
        suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
        mkdir -p "$CACHE"
        mmdebstrap --quiet --variant=minbase --format=tar \
            --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
            --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
            --customize-hook='test -x "$1"/usr/bin/python3.11 || { echo "no Python 3.11 in this distribution: no stand-in for python:3.11-slim" >&2; exit 1; }' \
            "$suite" - "$sources" 2>"$CACHE/mmdebstrap.log" | zstd -q -T0 -o "$tarball.part" \
            || { cat "$CACHE/mmdebstrap.log" >&2; exit 1; }
        mv "$tarball.part" "$tarball"
    fi
    need zstd
    # The uncompressed stream: importing the .zst records the compressed digest as the layer id,
    # and the build cache would then never hit.
    log "importing $BASE_IMAGE"
    zstd -dc "$tarball" | podman import --quiet \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
}

# The uv image: /uv and /uvx at its root, as in the official one, taken from the pinned uv wheel
# the Makefile installs from PyPI into .cache/tools.
uv_image() {
    if podman image exists "$UV_IMAGE"; then
        return
    fi
    local bin=$ROOT/.cache/tools/bin
    if [[ $("$bin/uv" --version 2>/dev/null) != "uv $UV_VERSION "* ]]; then
        log "$bin/uv is not uv $UV_VERSION: run make image (it installs the pinned uv)"
        exit 1
    fi
    local tarball=$CACHE/uv-$UV_VERSION.tar
    if [[ ! -s $tarball ]]; then
        mkdir -p "$CACHE"
        tar -C "$bin" --owner=0 --group=0 --mtime=@0 --sort=name -cf "$tarball.part" uv uvx
        mv "$tarball.part" "$tarball"
    fi
    log "importing $UV_IMAGE"
    podman import --quiet "$tarball" "$UV_IMAGE" >/dev/null
}

need podman runc slirp4netns
base_image
uv_image

build=(podman build --pull=never --network host --format docker
    --build-arg "VERSION=$VERSION" -t "$IMAGE" -t "$NAME:latest")
# Where TLS goes through an intercepting proxy whose CA only the host trusts: the host's
# bundle, mounted for the build only (the builder's SSL_CERT_FILE; nothing reaches the image).
if [[ -f $HOST_CA ]]; then
    build+=(-v "$HOST_CA:/run/host-ca.crt:ro" --build-arg SSL_CERT_FILE=/run/host-ca.crt)
fi
log "building $IMAGE"
"${build[@]}" --quiet . >/dev/null
log "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
