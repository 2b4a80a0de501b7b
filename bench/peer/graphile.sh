#!/usr/bin/env bash
# Peer comparison: graphile-worker (Node.js Postgres job queue, version pinned in
# bench/peer/graphile/package.json) no-op job drain rate on the same PostgreSQL,
# so pgcourier's benchmark can report "pgcourier / graphile-worker".
#
# Each run: fresh database gw_bench_<random>, graphile-worker migrations, N jobs
# enqueued with graphile_worker.add_jobs(), then wall time from worker start
# until the jobs table is empty. Tuned settings (localQueue.size=500,
# completeJobBatchDelay=0, failJobBatchDelay=0) at concurrency 4 and 24 (best
# kept), plus graphile-worker's default settings at concurrency 4 on min(N, 20000)
# jobs (fsync-bound, so capped; reported separately as default_config).
# Then enqueue alone (no worker, one more fresh database), measured as pgcourier's
# ingest is: add_jobs() of --enqueue-jobs N (default --jobs) jobs in one call, then
# add_job() one job per transaction from --enqueue-connections C (8) connections,
# closed loop, --enqueue-single-jobs M (20000) in all; --skip-enqueue skips it.
# Databases are dropped afterwards. Details in graphile/bench.mjs.
#
# Usage: bench/peer/graphile.sh [--jobs N] [--default-jobs M] [--skip-default]
#          [--enqueue-jobs N] [--enqueue-single-jobs M] [--enqueue-connections C] [--skip-enqueue]
#   DATABASE_URL: admin connection (needs CREATEDB); default
#   postgres://postgres@127.0.0.1:5432/postgres
# Progress goes to stderr; stdout gets exactly one JSON line, e.g.
#   {"peer":"graphile-worker","version":"0.17.3","jobs":100000,"runs":[{"concurrency":4,
#    "seconds":..,"jobs_per_s":..},{"concurrency":24,..}],"best_jobs_per_s":..,
#    "best_concurrency":4,"default_config":{"jobs":20000,"concurrency":4,..},
#    "enqueue":{"add_jobs_bulk":{"jobs":100000,"seconds":..,"jobs_per_s":..},
#               "add_job_single":{"connections":8,"jobs":20000,"seconds":..,"jobs_per_s":..}},...}
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/graphile" && pwd)"
die() { echo "graphile.sh: error: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node not found (need Node.js >= 18 for graphile-worker 0.17)"
command -v npm >/dev/null 2>&1 || die "npm not found (needed to install graphile-worker)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 18 ] || die "Node.js >= 18 required, found $(node --version)"

if [ ! -f "$dir/node_modules/graphile-worker/package.json" ] || [ ! -f "$dir/node_modules/pg/package.json" ]; then
  echo "graphile.sh: installing graphile-worker into $dir/node_modules" >&2
  if [ -f "$dir/package-lock.json" ]; then
    install_cmd=(npm ci)
  else
    install_cmd=(npm install)
  fi
  # npm's output goes to stderr so stdout stays a single JSON line.
  (cd "$dir" && "${install_cmd[@]}" --no-audit --no-fund 1>&2) \
    || die "'${install_cmd[*]}' failed in $dir (is the npm registry reachable?)"
fi

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
exec node "$dir/bench.mjs" "$@"
