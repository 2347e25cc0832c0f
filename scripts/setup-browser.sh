#!/usr/bin/env bash
# The web console's browser tests need Debian's Chromium and its WebDriver
# (packages chromium and chromium-driver: /usr/bin/chromium, /usr/bin/chromedriver).
# Idempotent: fast when both are there. Prints nothing on success but a log line
# when it installs.
set -euo pipefail

log() { echo "setup-browser: $*" >&2; }
die() { echo "setup-browser: $*" >&2; exit 1; }

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if have; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
  die "missing chromium and chromedriver: on Debian/Ubuntu as root, apt-get install chromium chromium-driver; then run this again"
fi
log "installing chromium and chromium-driver from the system archive"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
have || die "apt-get install chromium chromium-driver finished but chromium or chromedriver is missing"
log "$(chromium --version 2>/dev/null || true); $(chromedriver --version 2>/dev/null | head -n1 || true)"
