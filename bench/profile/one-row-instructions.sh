#!/usr/bin/env bash
# CPU instructions one single-row insert into et_messages costs PostgreSQL, counted by
# valgrind's callgrind: the same figure on a busy machine as on a quiet one, so a change to the
# insert path can be judged in one try where timings on these shared VMs move by ±30%.
#
# A private cluster (initdb in a temporary directory, fsync off, never the shared server) gets
# the schema through `pgcourier migrate`, a tenant and an email session. Then single-user
# `postgres --single` runs a prepared one-row INSERT (the rows the benchmark inserts, one
# transaction each) 50 times and 250 times under callgrind; the difference ÷ 200 is the cost of
# one transaction, start-up excluded.
#
# With `--bulk` it counts a row of a bulk insert instead: one `INSERT ... SELECT generate_series`
# of 1,000 rows and one of 5,000, the difference ÷ 4,000. Both make the same 1,000 threads (the
# bench's rows go to 1,000 recipients), so the rows counted are rows joining a thread that exists,
# as nearly all of the bench's bulk insert of 100,000 are.
#
# Usage: bench/profile/one-row-instructions.sh [--keep] [--sql FILE] [--migrate-with BENCH] [--bulk]
#   --bulk      a row of a bulk insert instead of a one-row insert
#   --sql FILE  run FILE against the database after migrating (try a trigger or constraint
#               change without writing a migration)
#   --keep      keep the directory with the callgrind outputs (callgrind_annotate --inclusive=yes)
#   --migrate-with BENCH  migrate with `BENCH --migrate-child` (the benchmark binary, which runs
#               the same migrations; `bench --scenario insert-cost` passes itself) instead of
#               target/release/pgcourier migrate
# Needs valgrind, PostgreSQL's server binaries (pg_config --bindir or /usr/lib/postgresql/*/bin)
# and target/release/pgcourier (cargo build --release) unless --migrate-with. Run as root: the
# cluster runs as postgres.
set -euo pipefail

die() { echo "one-row-instructions.sh: error: $*" >&2; exit 1; }
keep=0 sql="" bench="" bulk=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --sql) sql="$(realpath "${2:?--sql needs a file}")"; shift ;;
    --migrate-with) bench="${2:?--migrate-with needs the bench binary}"; shift ;;
    --bulk) bulk=1 ;;
    *) die "unknown argument $1" ;;
  esac
  shift
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -n "$bench" ]; then
  [ -x "$bench" ] || die "$bench is not an executable"
  migrate=("$bench" --migrate-child)
else
  pgcourier="$root/target/release/pgcourier"
  [ -x "$pgcourier" ] || die "$pgcourier not found: cargo build --release first"
  migrate=("$pgcourier" migrate)
fi
command -v valgrind >/dev/null || die "valgrind not found"
bin="$(pg_config --bindir 2>/dev/null || true)"
[ -x "$bin/postgres" ] || bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$bin/postgres" ] || die "PostgreSQL server binaries not found"
[ "$(id -u)" = 0 ] || die "run as root (the private cluster runs as the postgres user)"

dir="$(mktemp -d /tmp/pgcourier-instructions.XXXXXX)"
chown postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { su postgres -s /bin/bash -c "$*"; }
cleanup() {
  as_pg "'$bin/pg_ctl' -D '$dir/data' stop -m immediate" >/dev/null 2>&1 || true
  [ "$keep" = 1 ] && echo "kept: $dir" >&2 || rm -rf "$dir"
}
trap cleanup EXIT

as_pg "'$bin/initdb' -D '$dir/data' -A trust -U postgres" >/dev/null
as_pg "'$bin/pg_ctl' -D '$dir/data' -o '-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off' -l '$dir/log' -w start" >/dev/null
url="postgres://postgres@127.0.0.1:$port"
psql "$url/postgres" -qc "CREATE DATABASE cg" >/dev/null
DATABASE_URL="$url/cg" "${migrate[@]}" >/dev/null
session=$(psql "$url/cg" -qAt -c "INSERT INTO et_tenants (id, name) VALUES ('bench', 'Benchmark')" \
  -c "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, config)
      VALUES ('bench', 'email', 'log', 'Bench <noreply@bench.example>', '{}') RETURNING id")
[ -z "$sql" ] || psql "$url/cg" -q -v ON_ERROR_STOP=1 -f "$sql" >/dev/null
as_pg "'$bin/pg_ctl' -D '$dir/data' -w stop" >/dev/null

# the statement and rows of the bench's ingest (bench/src/setup.rs ROW_VALUES)
insert="INSERT INTO et_messages (tenant_id, channel_session_id, direction, recipients, subject, body_text) SELECT 'bench', $session, 'outbound', ARRAY['r' || (g % 1000) || '@example.com'], 'Benchmark ' || g, 'Hello from the pgcourier benchmark, message ' || g || '.'"
if [ -n "$bulk" ]; then
  small=1000 large=5000
  for n in $small $large; do
    echo "PREPARE ins(int) AS $insert FROM generate_series(1, \$1) g; EXECUTE ins($n);" > "$dir/in$n.sql"
  done
else
  small=50 large=250
  for n in $small $large; do
    {
      echo "PREPARE ins(int) AS $insert FROM (SELECT \$1 AS g) s;"
      seq 1 "$n" | sed 's/.*/EXECUTE ins(&);/'
    } > "$dir/in$n.sql"
  done
fi
chown postgres "$dir"/in*.sql

total() {
  rm -rf "$dir/run" && cp -a "$dir/data" "$dir/run"
  as_pg "valgrind --tool=callgrind --callgrind-out-file='$dir/callgrind.$1' '$bin/postgres' --single -D '$dir/run' \
         -c fsync=off -c autovacuum=off cg < '$dir/in$1.sql' > '$dir/single.$1.log' 2>&1"
  ! grep -q "ERROR" "$dir/single.$1.log" || die "an insert failed: $(grep -m1 ERROR "$dir/single.$1.log")"
  awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.$1"
}
a=$(total "$small")
b=$(total "$large")
version="$("$bin/postgres" --version | awk '{print $3}')"
if [ -n "$bulk" ]; then
  echo "one row of a bulk insert: $(( (b - a) / (large - small) )) instructions (callgrind, $large against $small rows, PostgreSQL $version)"
else
  echo "one single-row insert: $(( (b - a) / (large - small) )) instructions (callgrind, PostgreSQL $version)"
fi
