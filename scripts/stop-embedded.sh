#!/usr/bin/env bash
# Stops the embedded development cluster under target/strata-pg (or $STRATA_PG_DIR), if running.
set -euo pipefail
dir=${STRATA_PG_DIR:-"$(dirname "$0")/../target/strata-pg"}
pid_file="$dir/data/postmaster.pid"
[ -f "$pid_file" ] || exit 0
postgres=$(head -n 1 "$dir/data/postmaster.opts" | awk '{print $1}' | tr -d '"')
pg_ctl="$(dirname "$postgres")/pg_ctl"
if [ "$(id -u)" -eq 0 ]; then
  runuser -u postgres -- "$pg_ctl" -D "$dir/data" stop -m fast -w >/dev/null
else
  "$pg_ctl" -D "$dir/data" stop -m fast -w >/dev/null
fi
