#!/usr/bin/env bash
# Installs the pinned sea-orm-cli (2.0.4, built with postgres-vector, rustls, no MySQL or
# SQLite) into a cache directory whose name says the version and features, so a wrong
# or default-feature sea-orm-cli on PATH is never used by mistake.
# Idempotent: when the right binary is there it only checks its version (milliseconds).
# Prints the bin directory to put first on PATH.
set -euo pipefail

VERSION=2.0.4
FEATURES=codegen,sqlx-postgres,runtime-tokio-rustls,postgres-vector
ROOT="${STRATA_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/strata}/sea-orm-cli-$VERSION-postgres-vector"

if [ "$("$ROOT/bin/sea-orm-cli" --version 2>/dev/null || true)" != "sea-orm-cli $VERSION" ]; then
  printf 'install-tools: building sea-orm-cli %s with %s (a few minutes, once)\n' "$VERSION" "$FEATURES" >&2
  cargo install sea-orm-cli --version "$VERSION" --locked --no-default-features \
    --features "$FEATURES" --root "$ROOT" --quiet
fi
printf '%s\n' "$ROOT/bin"
