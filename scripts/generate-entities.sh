#!/usr/bin/env bash
# Regenerates the entity crate's sources from a migrated database.
#   scripts/generate-entities.sh DATABASE_URL [OUT_DIR]     (OUT_DIR defaults to entity/src)
# The one place the generation flags live: the README shows this command and the
# entity drift test runs this script.
set -euo pipefail
url=${1:?usage: generate-entities.sh DATABASE_URL [OUT_DIR]}
out=${2:-"$(dirname "$0")/../entity/src"}
cli=${SEA_ORM_CLI:-sea-orm-cli}
"$cli" generate entity -u "$url" -o "$out" \
  --lib --entity-format dense --with-serde both --date-time-crate chrono \
  --ignore-tables seaql_migrations >/dev/null
