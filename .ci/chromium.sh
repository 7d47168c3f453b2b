#!/usr/bin/env bash
# Makes sure headless Chromium is installed for the browser tests of the /ui page
# (tests/api/test_ui_browser.py drives it with Playwright for Python through its
# `executable_path`: no browser is ever downloaded by Playwright).
#
# When `chromium` is on PATH nothing happens. Otherwise it is installed from the distribution's
# packages (Debian/Ubuntu, as root): apt-get update, then `chromium` without recommends
# (about 30 s and ~250 MB here). Anything else (not root, no apt-get) stops with what to do.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: not found on PATH; install the distribution's 'chromium' package (as root:" \
        "apt-get install chromium) — the /ui browser tests need it" >&2
    exit 1
fi
started=$SECONDS
echo "chromium: not found; installing the distribution's package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "chromium: $(chromium --version 2>/dev/null || echo installed) in $((SECONDS - started)) s" >&2
