#!/usr/bin/env bash
# The README's tour of `strata`, as one script: a fresh database on the embedded
# cluster, the sample corpus ingested with the local embedder and searched, a job
# enqueued and worked, the caches, a review, the doctor.
# Run from the repository root: bash examples/tour/tour.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -n ${DATABASE_URL:-} ]]; then
  echo "tour.sh starts with 'strata migrate fresh', which empties the database:" \
       "it runs on the embedded cluster only (unset DATABASE_URL)" >&2
  exit 1
fi
bash scripts/setup-postgres.sh >/dev/null          # PostgreSQL + pgvector, once
model_dir=$(bash scripts/setup-model.sh | tail -1)  # all-MiniLM-L6-v2, once
export STRATA_MODEL_DIR=$model_dir
cargo build -q -p cli
strata() { target/debug/strata "$@"; }
show() {  # the command as you would type it
  printf '\n$'
  for arg in "$@"; do
    if [[ $arg =~ [[:space:]\"{] ]]; then printf " '%s'" "$arg"; else printf ' %s' "$arg"; fi
  done
  printf '\n'
}
step() { show strata "$@"; strata "$@"; }

show strata migrate fresh
strata migrate fresh 2>&1 | tail -n 1
step docs ingest examples/corpus/postgresql-docs.jsonl --embed local
step docs reindex
step docs search --text "how do advisory locks work" -k 3
step jobs enqueue maintenance '{"task": "refresh_cache_metrics"}'
printf '\n$ strata worker   # Ctrl-C once the job is done\n'
target/debug/strata worker &
worker=$!
for _ in $(seq 120); do  # until no job is pending or running
  left=$(strata jobs stats --json | python3 -c '
import json, sys
print(sum(c["count"] for c in json.load(sys.stdin)["counts"]
          if c["status"] in ("pending", "running", "processing")))')
  [[ $left == 0 ]] && break
  sleep 0.5
done
kill -INT "$worker"
wait "$worker"  # exits 0 after a graceful stop
step jobs list
printf '\n$ DATABASE_URL="$(strata db url)" cargo run -q -p library-tour   # an application of its own\n'
DATABASE_URL="$(strata db url)" cargo run -q -p library-tour 2>/dev/null | sed -n '/^job /,$p'
step cache stats
step users create ada@example.org --role admin
step users create bob@example.org --role moderator
printf '\n$ psql "$(strata db url)" -f examples/tour/annotations.sql\n'
url=$(strata db url)
psql -q -v ON_ERROR_STOP=1 "$url" -f examples/tour/annotations.sql
step review list
id=$(strata review list --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
step review approve "$id" --by bob@example.org
step review stats
step doctor
