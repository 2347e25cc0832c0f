#!/usr/bin/env bash
# The whole PostgreSQL 15 manual as a corpus for the store's full-corpus benchmark:
# Debian's package postgresql-doc-15 (the HTML manual, PostgreSQL License) fetched
# with `apt-get download` and unpacked without installing anything, then turned into
# `strata docs ingest` JSONL by scripts/pg-manual-corpus.py (one document per page,
# chunks of about 600 to 1,000 characters).
# Idempotent: when the corpus is there it does nothing. Prints the JSONL's path.
set -euo pipefail

DIR="${STRATA_CORPUS_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/strata/pg-manual-15}"
OUT="$DIR/postgresql-manual.jsonl"
here="$(cd "$(dirname "$0")" && pwd)"

if [ -s "$OUT" ] && [ "$OUT" -nt "$here/pg-manual-corpus.py" ]; then
  printf '%s\n' "$OUT"
  exit 0
fi

mkdir -p "$DIR"
if [ ! -d "$DIR/deb/usr/share/doc/postgresql-doc-15/html" ]; then
  printf 'fetch-pg-manual: downloading postgresql-doc-15 from Debian (2 MB, once)\n' >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  chmod 777 "$work"  # apt's sandbox user writes the download there
  (cd "$work" && apt-get download -q postgresql-doc-15 >/dev/null 2>&1)
  rm -rf "$DIR/deb"
  dpkg-deb -x "$work"/postgresql-doc-15_*.deb "$DIR/deb"
fi
python3 "$here/pg-manual-corpus.py" "$DIR/deb/usr/share/doc/postgresql-doc-15/html" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
printf '%s\n' "$OUT"
