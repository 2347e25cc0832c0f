#!/usr/bin/env bash
# Makes sure PostgreSQL >= 15 server binaries, the pgvector extension and PgBouncer (the
# transaction-mode pooler the topology tests put in front of the test cluster) are
# installed.
#
# Idempotent: when both are present it only looks (well under a second) and exits 0.
# On Debian/Ubuntu as root it installs what is missing:
#   - postgresql + postgresql-server-dev-$MAJOR from the system's archive;
#   - pgbouncer from the system's archive (Debian 12: 1.18);
#   - postgresql-$MAJOR-pgvector when the archive has it; otherwise (Debian 12 has none)
#     it builds pgvector from Debian's own source package of a newer suite, fetched with a
#     deb-src line kept in a private apt directory (the system's sources are never edited).
# Elsewhere, or without root, it stops and says exactly what to install.
set -euo pipefail

MIN_MAJOR=15
# Newer Debian suite whose pgvector source package is used when the archive has no binary.
PGVECTOR_SRC_SUITE="${PGVECTOR_SRC_SUITE:-trixie}"
PGVECTOR_SRC_MIRROR="${PGVECTOR_SRC_MIRROR:-http://deb.debian.org/debian}"

log() { printf 'setup-postgres: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The newest installed server major with initdb, or empty.
installed_major() {
  local best="" d m
  for d in /usr/lib/postgresql/*/bin/initdb; do
    [ -x "$d" ] || continue
    m=$(basename "$(dirname "$(dirname "$d")")")
    [[ "$m" =~ ^[0-9]+$ ]] || continue
    if [ -z "$best" ] || [ "$m" -gt "$best" ]; then best=$m; fi
  done
  if [ -z "$best" ] && command -v pg_config >/dev/null 2>&1; then
    m=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
    if [ -x "$(pg_config --bindir)/initdb" ]; then best=$m; fi
  fi
  printf '%s' "$best"
}

sharedir_of() {
  local major=$1
  if [ -x "/usr/lib/postgresql/$major/bin/pg_config" ]; then
    "/usr/lib/postgresql/$major/bin/pg_config" --sharedir
  elif [ -d "/usr/share/postgresql/$major" ]; then
    printf '/usr/share/postgresql/%s' "$major"
  else
    pg_config --sharedir
  fi
}

has_pgvector() {
  local major=$1
  [ -f "$(sharedir_of "$major")/extension/vector.control" ]
}

has_pgbouncer() {
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]
}

major=$(installed_major)
if [ -n "$major" ] && [ "$major" -ge "$MIN_MAJOR" ] && has_pgvector "$major" && has_pgbouncer; then
  exit 0
fi

# Something is missing: we can only install it on Debian/Ubuntu as root.
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
  die "missing prerequisites. Install PostgreSQL ${MIN_MAJOR}+ server binaries (initdb, pg_ctl, postgres), the pgvector extension for it and pgbouncer, e.g. on Debian/Ubuntu as root: apt-get install postgresql postgresql-server-dev-all pgbouncer, then pgvector (postgresql-<major>-pgvector or from source: https://github.com/pgvector/pgvector#installation); on macOS: brew install postgresql@16 pgvector pgbouncer. Then run this again."
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update() { if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi; }

if ! has_pgbouncer; then
  log "installing pgbouncer from the system archive"
  apt_update
  apt-get install -y -qq pgbouncer >/dev/null
  has_pgbouncer || die "apt-get install pgbouncer finished but no pgbouncer binary was found"
fi

if [ -z "$major" ] || [ "$major" -lt "$MIN_MAJOR" ]; then
  log "installing PostgreSQL server from the system archive"
  apt_update
  apt-get install -y -qq postgresql >/dev/null
  major=$(installed_major)
  [ -n "$major" ] && [ "$major" -ge "$MIN_MAJOR" ] \
    || die "the archive's PostgreSQL is older than $MIN_MAJOR; install PostgreSQL $MIN_MAJOR+ (e.g. from apt.postgresql.org) and run this again"
fi

if has_pgvector "$major"; then exit 0; fi

apt_update
if apt-cache show "postgresql-$major-pgvector" >/dev/null 2>&1; then
  log "installing postgresql-$major-pgvector from the archive"
  apt-get install -y -qq "postgresql-$major-pgvector" >/dev/null
  has_pgvector "$major" && exit 0
fi

log "building pgvector for PostgreSQL $major from Debian's source package ($PGVECTOR_SRC_SUITE)"
apt-get install -y -qq "postgresql-server-dev-$major" build-essential dpkg-dev >/dev/null

# A private apt configuration that only knows the deb-src line; the system's sources are untouched.
apt_dir=$(mktemp -d /tmp/strata-apt.XXXXXX)
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d"
printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
  "$PGVECTOR_SRC_MIRROR" "$PGVECTOR_SRC_SUITE" >"$apt_dir/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" update -qq
(cd "$apt_dir" && apt-get "${apt_opts[@]}" source -qq pgvector >/dev/null 2>&1) \
  || die "apt-get source pgvector from $PGVECTOR_SRC_SUITE failed"
src=$(find "$apt_dir" -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)
[ -n "$src" ] || die "apt-get source pgvector produced no source tree in $apt_dir"
pg_config_bin="/usr/lib/postgresql/$major/bin/pg_config"
make -s -C "$src" PG_CONFIG="$pg_config_bin" OPTFLAGS="" -j"$(nproc)" >/dev/null
make -s -C "$src" PG_CONFIG="$pg_config_bin" install >/dev/null
has_pgvector "$major" || die "pgvector build finished but vector.control is not in $(sharedir_of "$major")/extension"
log "pgvector installed for PostgreSQL $major"
