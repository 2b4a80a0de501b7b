#!/usr/bin/env bash
# The OpenAPI conformance check: schemathesis (from PyPI) against a running daemon.
#
# A fresh database on the test server (DATABASE_URL's server, else postgres@127.0.0.1:5432),
# migrated and seeded by `pgcourier up` (the demo tenant: an email session writing .eml files
# under target/, a chat session that only logs, so nothing leaves the machine; an API key with
# every scope), the daemon on a free loopback port, then `st run` on its /openapi.json with
# the key. Any finding (a 5xx, a status, content type or body the document does not declare)
# fails the run. Everything is torn down on exit, also on failure.
#
# Rerun locally with `.ci/schemathesis.sh`; knobs (environment):
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 50)
#   SCHEMATHESIS_BUDGET        hard time limit of the run in seconds (default 300)
#   SCHEMATHESIS_SEED          the generator's seed (default fixed, so a run is reproducible)
#   SCHEMATHESIS_ARGS          more arguments for `st run` (e.g. --include-path-regex '^/v1/webhooks')
#   PGCOURIER_BIN              the daemon binary (default: `cargo build`, then target/debug/pgcourier)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
work="$PWD/target/schemathesis"
venv="$work/venv"
mkdir -p "$work"

# schemathesis in a venv of its own, installed when missing (or of another version)
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ -z "${PGCOURIER_BIN:-}" ]; then
  cargo build --quiet --bin pgcourier
  PGCOURIER_BIN="target/debug/pgcourier"
fi

admin_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="pgcourier_schemathesis_$$"
db_url="${admin_url%/*}/$db"
data="$work/data-$$"
log="$work/daemon-$$.log"
daemon=""
config=""

cleanup() {
  status=$?
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon" 2>/dev/null || true
  fi
  psql "$admin_url" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  [ -n "${SCHEMATHESIS_KEEP:-}" ] || rm -rf "$data" "${config:-}"
  if [ "$status" -ne 0 ] && [ -s "$log" ]; then
    echo "--- the daemon's log (last 40 lines of $log) ---" >&2
    tail -n 40 "$log" >&2
  elif [ -z "${SCHEMATHESIS_KEEP:-}" ]; then
    rm -f "$log"
  fi
  exit "$status"
}
trap cleanup EXIT

psql "$admin_url" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
mkdir -p "$data"

# `up` with DATABASE_URL set: migrate, create the demo tenant, its sessions and a key with every
# scope (written to $data/demo-api-key), then run the daemon; port 0 = a free port, announced
# (webhook endpoints may also point at loopback, so the seeded one stays on this machine; the
# provider sessions' secrets are set, so their routes check signatures: 401 rather than 503)
DATABASE_URL="$db_url" PGCOURIER_DATA_DIR="$data" PGCOURIER_HTTP_ADDR="127.0.0.1:0" \
  PGCOURIER_POLL_INTERVAL=200ms PGCOURIER_NETWORK_ALLOW=loopback RUST_LOG="${RUST_LOG:-info}" \
  PGCOURIER_SECRET_ST_HOOK=st-hook-secret PGCOURIER_SECRET_ST_TWILIO=st-twilio-token \
  "$PGCOURIER_BIN" up >"$log" 2>&1 &
daemon=$!

addr=""
for _ in $(seq 1 300); do
  addr=$(grep -o 'The HTTP API listens on [0-9.]*:[0-9]*' "$log" 2>/dev/null | awk '{print $NF}' || true)
  [ -n "$addr" ] && break
  kill -0 "$daemon" 2>/dev/null || { echo "the daemon exited before it listened" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "the daemon did not announce its address within 30 s" >&2; exit 1; }
key=$(cat "$data/demo-api-key")
base="http://$addr"
echo "schemathesis against $base (database $db)" >&2

# Things for the generated requests to find besides 404s: a scheduled message (and its thread),
# a webhook endpoint, and a session of each provider with an inbound route. Their ids go into
# a dictionary that schemathesis draws path ids from half of the time.
sql() { psql "$db_url" -qAt -v ON_ERROR_STOP=1 -c "$1"; }
api() { curl -sS --fail-with-body -H "x-api-key: $key" -H 'content-type: application/json' "$@"; }
json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
later=$(date -u -d '+300 days' +%Y-%m-%dT%H:%M:%SZ)
sent=$(api -d "{\"to\": [\"st@example.com\"], \"subject\": \"schemathesis\", \"textBody\": \"hi\", \"scheduledAt\": \"$later\"}" "$base/v1/messages")
message_id=$(echo "$sent" | json '["id"]')
message_uuid=$(echo "$sent" | json '["messageId"]')
thread_id=$(echo "$sent" | json '["threadId"]')
endpoint_id=$(api -d '{"url": "http://127.0.0.1:9/schemathesis"}' "$base/v1/webhooks" | json '["id"]')
session() { sql "INSERT INTO et_channel_sessions (tenant_id, channel, provider, address, credentials_ref, config)
                 VALUES ('demo', '$1', '$2', '$3', $4, '$5') RETURNING id"; }
sessions=(
  "$(session sms twilio +15550000101 "'ST_TWILIO'" '{}')"
  "$(session whatsapp whatsapp_cloud +15550000102 NULL '{"app_secret_ref": "ST_HOOK", "verify_token_ref": "ST_HOOK"}')"
  "$(session telegram telegram_bot @st_bot NULL '{"webhook_secret_ref": "ST_HOOK"}')"
  "$(session whatsapp http_bridge +15550000104 NULL '{"webhook_secret_ref": "ST_HOOK"}')"
)
ids=("$message_id" "$message_uuid" "$thread_id" "$endpoint_id" "${sessions[@]}")
config="$work/schemathesis-$$.toml"
{
  echo "[dictionaries.ids]"
  # numbers bare (the integer ids), the message's uuid quoted
  printf 'values = [%s]\n' "$(printf '%s, ' "${ids[@]}" | sed -E 's/([0-9a-f]{8}-[0-9a-f-]{27})/"\1"/; s/, $//')"
  echo "[parameters]"
  echo '"path.id" = { dictionary = "ids", probability = 0.5 }'
  echo '"path.session_id" = { dictionary = "ids", probability = 0.5 }'
} >"$config"

# one worker: with threads, CPython 3.11 can fail compiling schemathesis's generated code
# ("AST constructor recursion depth mismatch"), a runtime error that is no finding of ours.
#
# The standard checks (no 5xx; every status, content type, header and body as declared), and
# that auth is enforced and an undeclared method is 405 with an Allow header. Not the checks that
# the server's validation equals the schema's (positive_data_acceptance,
# negative_data_rejection): the server checks more than a schema can say (address syntax,
# per-channel limits, a tenant's own lower limits) and answers those with a declared 400.
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
checks="$checks,response_headers_conformance,ignored_auth,unsupported_method,allow_header_conformance"
set +e
# (run from $work, where schemathesis keeps its .schemathesis cache)
top=$PWD
cd "$work"
timeout --kill-after=10 "${SCHEMATHESIS_BUDGET:-300}" \
  "$venv/bin/st" --config-file "$config" run "$base/openapi.json" \
    --url "$base" \
    --header "x-api-key: $key" \
    --checks "${SCHEMATHESIS_CHECKS:-$checks}" \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
    --seed "${SCHEMATHESIS_SEED:-17011}" \
    --workers 1 \
    --request-timeout 20 \
    --generation-database none \
    --no-color \
    --report junit --report-dir "$work/report" \
    ${SCHEMATHESIS_ARGS:-}
rc=$?
set -e
cd "$top"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "schemathesis: over the time budget of ${SCHEMATHESIS_BUDGET:-300} s" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "schemathesis: findings (exit $rc); the report is in $work/report" >&2
  exit "$rc"
fi
kill -0 "$daemon" 2>/dev/null || { echo "the daemon died during the run" >&2; exit 1; }
echo "schemathesis: no findings" >&2
