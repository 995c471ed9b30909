#!/usr/bin/env bash
# Latchkey at scale (issue 15, item 5): PostgreSQL loaded with generated users, credential accounts,
# sessions and API keys, and the database paths measured at each size, over 127.0.0.1 only. Usage:
#
#   bash bench/scale.sh                                  # 10 thousand, then 10 million
#   SCALE_SIZES="10000 1000000" bash bench/scale.sh      # a quicker trial
#
# For each size N (SCALE_SIZES, ascending) on a throw-away database:
#   1. Latchkey starts once on it (the migrations), one user signs up through the API, and that user's
#      Argon2id hash is reused for every generated account (so each sign-in really hashes).
#   2. N users, N credential accounts, N live sessions and N API keys are generated in SQL
#      (INSERT … SELECT over generate_series, SCALE_BATCH rows per statement, progress on stderr,
#      `synchronous_commit=off` for the load only). The tables' secondary indexes and their unique and
#      foreign-key constraints are dropped for the load and re-created from their own definitions after it
#      (an index built once is minutes faster than 10 M random insertions); the script checks that the
#      schema is then identical to what the migrations made. VACUUM ANALYZE follows.
#      At the largest size, N × SCALE_EXPIRED_PERCENT / 100 expired sessions are generated as well.
#   3. Latchkey starts on the loaded database. At the largest size its start-up maintenance deletes the
#      expired sessions (src/storage/cleanup.rs: batches of 1,000, each its own transaction) while
#      pg_stat_activity is sampled every 50 ms and a DB-path get-session probe runs: reported are the
#      cleanup's duration, its batches and slowest batch (the server's own log line), the longest DELETE
#      transaction seen by the sampler (row locks are held until commit: this is the longest lock), any
#      backend seen waiting on a lock, and the probe's p99.
#   4. Measured with wrk --latency (p50, p99 from wrk's distribution):
#        get-session, DB path   GET /api/auth/get-session?disableCookieCache=true with only the signed
#                               session-token cookie (no cookie cache), spread over SCALE_SAMPLE random
#                               generated sessions (their cookies are signed here with the server's
#                               secret, as Better Auth signs them: HMAC-SHA256, base64)
#        API-key check, DB path GET /api/auth/check with x-api-key, a uniformly random generated key per
#                               request; the key cache is off (LATCHKEY_API_KEYS_CACHE_TTL=0)
#        sign-in                POST /api/auth/sign-in/email, a uniformly random generated user per request
#      The per-table sequential-scan counters (pg_stat_user_tables) are read before and after the runs,
#      and EXPLAIN ANALYZE of the three lookups is kept: no hot query may scan.
#   5. Two rarer statements that once read whole tables (migration 0011), timed by request: deleting an
#      organization (with an API key in it, active in a session), and the management API's first page of
#      users (with and without include_totals), SCALE_ORG_ROUNDS times each (default 3; the slowest shown).
# Then the report (bench/results/scale.md): the p99 ratios largest / smallest size, target ≤ 1.5.
#
# Environment (all optional):
#   SCALE_SIZES="10000 10000000"  user counts, ascending      SCALE_BATCH=1000000   rows per INSERT
#   SCALE_EXPIRED_PERCENT=50      expired sessions at the largest size (0: no cleanup measurement)
#   SCALE_SAMPLE=200000           sessions the get-session run spreads over (capped at N)
#   SCALE_PROBE=20s               the get-session probe during the cleanup
#   SCALE_ROUNDS=3                measurement rounds; they alternate the sizes, the report takes medians
#   BENCH_DURATION=20s  BENCH_WARMUP=10s  BENCH_THREADS=2  BENCH_CONNECTIONS=8
#   BENCH_SIGNIN_CONNECTIONS=8    (sign-in is Argon2id-bound: ~50 per second per core)
#   BENCH_PG_HOST=127.0.0.1 BENCH_PG_PORT=5432 BENCH_PG_USER=postgres   (PGPASSWORD is honoured)
#   BENCH_PORT_BASE=18080  BENCH_SKIP_BUILD=1 (use $CARGO_TARGET_DIR/release/latchkey as it is)
#   SCALE_SERVER_ENV="K=V …"     more environment for the measured servers (experiments)
#   SCALE_KEEP_DB=1               keep the databases (their names are printed) instead of dropping them
#   SCALE_RESULTS=<file>          default bench/results/scale.md
#   CARGO_TARGET_DIR              default /tmp/latchkey-target
#
# Needs about 2 GB of disk per million users. Exit status 0 when every run was free of errors (HTTP ≥ 400
# or socket errors); 1 otherwise (the report is still written). The p99 target is reported, not enforced:
# on a shared machine it is a measurement, not a test.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/latchkey-target}
read -r -a SIZES <<<"${SCALE_SIZES:-10000 10000000}"
BATCH=${SCALE_BATCH:-1000000}
EXPIRED_PERCENT=${SCALE_EXPIRED_PERCENT:-50}
SAMPLE=${SCALE_SAMPLE:-200000}
PROBE=${SCALE_PROBE:-20s}
DURATION=${BENCH_DURATION:-20s}
WARMUP=${BENCH_WARMUP:-10s}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-8}
ROUNDS=${SCALE_ROUNDS:-3}
SIGNIN_CONNECTIONS=${BENCH_SIGNIN_CONNECTIONS:-8}
RESULTS=${SCALE_RESULTS:-$ROOT/bench/results/scale.md}
SERVER_BIN=$CARGO_TARGET_DIR/release/latchkey
PASSWORD="scale bench password $(random_hex 4)"
MASTER_PASSWORD=$(random_hex 16)
TABLES="'users','accounts','sessions','api_keys'"
fmt() { awk -v v="$1" -v p="$2" 'BEGIN { printf("%." p "f", v) }'; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-scale.XXXXXX")
DBS=()
cleanup() {
  local rc=$? db
  set +e
  bench_cleanup_pids
  if [[ ${SCALE_KEEP_DB:-0} != 1 ]]; then
    for db in "${DBS[@]}"; do
      pg -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
        || printf 'bench: warning: could not drop database %s\n' "$db" >&2
    done
  elif ((${#DBS[@]})); then
    log "kept databases: ${DBS[*]}"
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

prev=0
for n in "${SIZES[@]}"; do
  [[ $n =~ ^[0-9]+$ ]] && ((n > 0)) || die "SCALE_SIZES: '$n' is not a positive count"
  ((n > prev)) || die "SCALE_SIZES must be ascending"
  prev=$n
done
LARGEST=${SIZES[-1]}
ensure_tools wrk psql curl python3
pg -d postgres -tAc 'SELECT 1' >/dev/null || die "PostgreSQL at $PG_HOST:$PG_PORT (user $PG_USER) is unreachable"

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release
fi
[[ -x $SERVER_BIN ]] || die "$SERVER_BIN not found (build with: cargo build --release)"
log "disk before the load: $(df -h --output=avail "$(pg -d postgres -tAc 'SHOW data_directory' 2>/dev/null || echo /)" 2>/dev/null | tail -n 1 | tr -d ' ') free"

# ---------------------------------------------------------------------------------------------------
# the server

SERVER_PID=""
SERVER_URL=""
SERVER_LOG=""
# The server secret of the database being measured (its signing keys are sealed under it).
SECRET=""

# start_server <database> <label> [extra env...]
start_server() {
  local db=$1 label=$2
  shift 2
  local port
  port=$(pick_port)
  SERVER_URL="http://127.0.0.1:$port"
  SERVER_LOG="$TMP/server-$label.log"
  local envs=(
    "PATH=$PATH" "HOME=${HOME:-/tmp}"
    "LATCHKEY_LISTEN=127.0.0.1:$port"
    "LATCHKEY_DATABASE_URL=$(pg_url "$db")"
    "LATCHKEY_BASE_URL=http://localhost:$port"
    "LATCHKEY_SECRET=$SECRET"
    "MASTER_USERNAME=bench" "MASTER_PASSWORD=$MASTER_PASSWORD"
    LATCHKEY_RATE_LIMIT_SIGN_IN_PER_IP=1000000000
    LATCHKEY_RATE_LIMIT_SIGN_IN_FAILURES_PER_EMAIL=1000000000
    LATCHKEY_RATE_LIMIT_SIGN_UP_PER_IP=1000000000
    LATCHKEY_RATE_LIMIT_VERIFY_PER_IP=1000000000
    LATCHKEY_LOG_FORMAT=json
    "$@"
  )
  log "starting latchkey ($label) on $SERVER_URL, log $SERVER_LOG"
  (cd "$TMP" && exec setsid env -i "${envs[@]}" "$SERVER_BIN" serve) >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_http_200 "$SERVER_URL/healthz" "$SERVER_PID" "$SERVER_LOG" 120
}

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  stop_pid "$SERVER_PID"
  SERVER_PID=""
}

# curl_code <output file> <curl args...>: the HTTP status.
curl_code() {
  local out=$1
  shift
  curl -sS --max-time 30 -o "$out" -w '%{http_code}' "$@" || echo 000
}

# ---------------------------------------------------------------------------------------------------
# generation

# The secondary indexes and the unique and foreign-key constraints of the four tables, as SQL that
# re-creates them (unique first, then plain indexes, then foreign keys).
schema_sql() {
  pg -d "$1" -tA <<EOF
SELECT format('ALTER TABLE %I ADD CONSTRAINT %I %s;', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
  FROM pg_constraint c WHERE c.conrelid::regclass::text IN ($TABLES) AND c.contype = 'u' ORDER BY 1;
SELECT indexdef || ';' FROM pg_indexes i WHERE i.schemaname = 'public' AND i.tablename IN ($TABLES)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) ORDER BY 1;
SELECT format('ALTER TABLE %I ADD CONSTRAINT %I %s;', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
  FROM pg_constraint c WHERE c.conrelid::regclass::text IN ($TABLES) AND c.contype = 'f' ORDER BY 1;
EOF
}

# Every index and constraint of the four tables (names and definitions), to compare before and after.
schema_fingerprint() {
  pg -d "$1" -tA <<EOF
SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename IN ($TABLES)
UNION ALL
SELECT c.conname || ' ' || pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.conrelid::regclass::text IN ($TABLES)
ORDER BY 1;
EOF
}

drop_secondary_sql() {
  pg -d "$1" -tA <<EOF
SELECT format('ALTER TABLE %I DROP CONSTRAINT %I;', c.conrelid::regclass, c.conname)
  FROM pg_constraint c WHERE c.conrelid::regclass::text IN ($TABLES) AND c.contype = 'f';
SELECT format('ALTER TABLE %I DROP CONSTRAINT %I;', c.conrelid::regclass, c.conname)
  FROM pg_constraint c WHERE c.conrelid::regclass::text IN ($TABLES) AND c.contype = 'u';
SELECT format('DROP INDEX %I;', i.indexname) FROM pg_indexes i WHERE i.schemaname = 'public' AND i.tablename IN ($TABLES)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname);
EOF
}

# The generated rows of one table for ids lo..hi. Ids and plaintexts derive from i, so the bench knows
# every session token and API key: session token 'S' + i in 31 digits, key 'lk_' + i in 48 digits; the
# stored values are their SHA-256 (hex), as the server stores them.
gen_sql() {
  local table=$1
  case $table in
    users) cat <<'EOF' ;;
INSERT INTO users (id, email, name, email_verified, role, created_at, updated_at)
SELECT 'usr_s' || lpad(i::text, 23, '0'), 'u' || i || '@scale.example', 'Scale user ' || i, TRUE, 'user', :t0, :t0
FROM generate_series(:lo::bigint, :hi::bigint) AS i;
EOF
    accounts) cat <<'EOF' ;;
INSERT INTO accounts (id, user_id, provider_id, account_id, password_hash, created_at, updated_at)
SELECT 'acc_s' || lpad(i::text, 23, '0'), 'usr_s' || lpad(i::text, 23, '0'), 'credential',
  'usr_s' || lpad(i::text, 23, '0'), :'hash', :t0, :t0
FROM generate_series(:lo::bigint, :hi::bigint) AS i;
EOF
    sessions) cat <<'EOF' ;;
INSERT INTO sessions (id, token_hash, user_id, expires_at, ip_address, user_agent, created_at, updated_at)
SELECT 'ses_s' || lpad(i::text, 23, '0'), encode(sha256(convert_to('S' || lpad(i::text, 31, '0'), 'UTF8')), 'hex'),
  'usr_s' || lpad(i::text, 23, '0'), :t0 + 2592000000, '127.0.0.1', 'latchkey-scale', :t0, :t0
FROM generate_series(:lo::bigint, :hi::bigint) AS i;
EOF
    api_keys) cat <<'EOF' ;;
INSERT INTO api_keys (id, name, start, prefix, key_hash, reference_id, enabled, created_at, updated_at)
SELECT 'key_s' || lpad(i::text, 23, '0'), 'scale', 'lk_000', 'lk_',
  encode(sha256(convert_to('lk_' || lpad(i::text, 48, '0'), 'UTF8')), 'hex'), 'usr_s' || lpad(i::text, 23, '0'),
  TRUE, :t0, :t0
FROM generate_series(:lo::bigint, :hi::bigint) AS i;
EOF
    # Sessions that expired over the past week (spread, as real ones are), owned by users 1..N in turn.
    expired) cat <<'EOF' ;;
INSERT INTO sessions (id, token_hash, user_id, expires_at, ip_address, user_agent, created_at, updated_at)
SELECT 'ses_x' || lpad(i::text, 23, '0'), encode(sha256(convert_to('X' || lpad(i::text, 31, '0'), 'UTF8')), 'hex'),
  'usr_s' || lpad((1 + (i - 1) % :n)::text, 23, '0'), :t0 - 1000 - (i * 7919 % 604800000), '127.0.0.1',
  'latchkey-scale', :t0 - 2592000000, :t0 - 2592000000
FROM generate_series(:lo::bigint, :hi::bigint) AS i;
EOF
  esac
}

# generate <database> <table> <rows> <t0> <hash> <n>
generate() {
  local db=$1 table=$2 rows=$3 t0=$4 hash=$5 n=$6 lo hi start=$SECONDS
  for ((lo = 1; lo <= rows; lo += BATCH)); do
    hi=$((lo + BATCH - 1))
    ((hi > rows)) && hi=$rows
    { echo "SET synchronous_commit = off;"; gen_sql "$table"; } \
      | pg -d "$db" -v lo="$lo" -v hi="$hi" -v t0="$t0" -v hash="$hash" -v n="$n" >/dev/null
    log "  $table: $hi / $rows rows ($(human_seconds $((SECONDS - start))))"
  done
}

# load <database> <n> <expired>: everything of step 2; records GEN_NOTE.
load() {
  local db=$1 n=$2 expired=$3 hash t0 before after start=$SECONDS step
  hash=$(pg -d "$db" -tAc "SELECT password_hash FROM accounts WHERE provider_id = 'credential' LIMIT 1")
  [[ $hash == '$argon2id$'* ]] || die "the signed-up account has no Argon2id hash (got '${hash:0:12}…')"
  t0=$(date +%s%3N)
  before=$(schema_fingerprint "$db")
  schema_sql "$db" >"$TMP/recreate.sql"
  drop_secondary_sql "$db" | pg -d "$db" >/dev/null
  log "generating $n users, accounts, sessions and API keys$( ((expired > 0)) && echo ", and $expired expired sessions") in $db"
  for table in users accounts sessions api_keys; do generate "$db" "$table" "$n" "$t0" "$hash" "$n"; done
  ((expired > 0)) && generate "$db" expired "$expired" "$t0" "$hash" "$n"
  step=$SECONDS
  log "re-creating the indexes and constraints"
  { echo "SET maintenance_work_mem = '1GB';"; cat "$TMP/recreate.sql"; } | pg -d "$db" >/dev/null
  local built=$((SECONDS - step))
  after=$(schema_fingerprint "$db")
  if [[ $before != "$after" ]]; then
    diff <(echo "$before") <(echo "$after") >&2 || true
    die "the schema after the load differs from the migrations' (diff above)"
  fi
  step=$SECONDS
  log "VACUUM ANALYZE"
  pg -d "$db" -c "VACUUM ANALYZE users, accounts, sessions, api_keys" >/dev/null
  local vacuumed=$((SECONDS - step))
  GEN_NOTE="$(human_seconds $((SECONDS - start))) in all: rows $(human_seconds $((step - start - built))), indexes and constraints $(human_seconds "$built"), VACUUM ANALYZE $(human_seconds "$vacuumed")"
  SIZES_NOTE=$(pg -d "$db" -tA -F' ' -c "SELECT relname, pg_size_pretty(pg_table_size(oid)), pg_size_pretty(pg_indexes_size(oid))
    FROM pg_class WHERE relname IN ($TABLES) ORDER BY relname" | awk '{ printf "%s%s %s %s + indexes %s %s", (NR > 1 ? "; " : ""), $1, $2, $3, $4, $5 }')
  log "loaded in $GEN_NOTE; $SIZES_NOTE"
}

# ---------------------------------------------------------------------------------------------------
# measurement

# Results by "<scenario>/<size>/<round>".
declare -A RPS P50 P99 ERRS
FLAGGED=0

# measure <label> <size> <round> <connections> <url> [extra wrk args]: warm-up, then the measured run.
measure() {
  local label=$1 n=$2 round=$3 conns=$4 url=$5
  shift 5
  local out="$TMP/wrk-$RANDOM$RANDOM.txt" line key="$label/$n/$round"
  if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
    timeout -k 5 $(($(seconds_of "$WARMUP") + 60)) wrk -t"$THREADS" -c"$conns" -d"$WARMUP" \
      -s "$ROOT/bench/scale.lua" "$@" "$url" >/dev/null 2>&1 || true
  fi
  log "wrk: $label at $n users, round $round — -t$THREADS -c$conns -d$DURATION"
  timeout -k 5 $(($(seconds_of "$DURATION") + 60)) wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency \
    -s "$ROOT/bench/scale.lua" "$@" "$url" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed: $label"; }
  line=$(bench_line "$out") || { cat "$out" >&2; die "no LATCHKEY_BENCH line: $label"; }
  RPS[$key]=$(field "$line" rps)
  P50[$key]=$(field "$line" p50_ms)
  P99[$key]=$(field "$line" p99_ms)
  local es eo
  es=$(field "$line" errors_status)
  eo=$(field "$line" errors_socket)
  ERRS[$key]=$((es + eo))
  if ((es + eo > 0)); then
    FLAGGED=$((FLAGGED + 1))
    printf 'bench: warning: %s at %s saw %s HTTP errors and %s socket errors\n' "$label" "$n" "$es" "$eo" >&2
  fi
  log "  ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms"
}

# The signed session-token cookies of SAMPLE random generated sessions, one Cookie header value a line.
cookie_file() {
  local n=$1 name=$2 out=$3
  python3 - "$n" "$SAMPLE" "$SECRET" "$name" >"$out" <<'EOF'
import base64, hashlib, hmac, random, sys, urllib.parse
n, sample, secret, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4]
for i in random.sample(range(1, n + 1), min(n, sample)):
    token = "S" + str(i).rjust(31, "0")
    signature = base64.b64encode(hmac.new(secret, token.encode(), hashlib.sha256).digest()).decode()
    print(f"{name}={urllib.parse.quote(token + '.' + signature, safe='')}")
EOF
}

seq_scans() {
  pg -d "$1" -tA -F= -c "SELECT relname, seq_scan FROM pg_stat_user_tables WHERE relname IN ($TABLES) ORDER BY relname"
}

# explain <database> <n>: EXPLAIN ANALYZE of the three lookups, for a generated row in the middle.
explain() {
  local db=$1 n=$2 mid
  mid=$(((n + 1) / 2))
  pg -d "$db" -tA -v mid="$mid" <<'EOF'
SELECT '-- get-session: the session and its user by token hash';
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT s.id, s.expires_at, u.email FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.token_hash = encode(sha256(convert_to('S' || lpad(:'mid', 31, '0'), 'UTF8')), 'hex') AND u.blocked = FALSE;
SELECT '-- API key: the key and its owner by key hash';
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT k.id, u.email FROM api_keys k JOIN users u ON u.id = k.reference_id
  WHERE k.key_hash = encode(sha256(convert_to('lk_' || lpad(:'mid', 48, '0'), 'UTF8')), 'hex');
SELECT '-- sign-in: the user and the credential account by email';
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT u.id, a.password_hash FROM users u
  LEFT JOIN accounts a ON a.user_id = u.id AND a.provider_id = 'credential' WHERE u.email = 'u' || :'mid' || '@scale.example';
EOF
}

# org_deletions <database> <n>: SCALE_ORG_ROUNDS times, the seed user creates an organization (it becomes
# their session's active one) and an API key in it, then deletes the organization — which clears it as
# any session's active organization and cascades to its keys: the two statements that read whole tables
# before migration 0011. Records the slowest deletion and the sequential scans the deletions made.
declare -A ORG_NOTE MGMT_NOTE
org_deletions() {
  local db=$1 n=$2 i out="$TMP/org.json" code org times=() before after
  local auth=(-H "Authorization: Bearer $SEED_TOKEN" -H 'Content-Type: application/json')
  before=$(seq_scans "$db")
  for ((i = 1; i <= ${SCALE_ORG_ROUNDS:-3}; i++)); do
    code=$(curl_code "$out" "${auth[@]}" --data "{\"name\":\"Scale $i\",\"slug\":\"scale-$i-$(random_hex 3)\"}" \
      "$SERVER_URL/api/auth/organization/create")
    [[ $code == 200 ]] || { cat "$out" >&2; die "organization/create answered HTTP $code"; }
    org=$(grep -o '"id":"[^"]*"' "$out" | head -n 1 | cut -d'"' -f4)
    code=$(curl_code "$out" "${auth[@]}" --data "{\"name\":\"org key\",\"organizationId\":\"$org\"}" \
      "$SERVER_URL/api/auth/api-key/create")
    [[ $code == 200 ]] || { cat "$out" >&2; die "api-key/create in the organization answered HTTP $code"; }
    times+=("$(curl -sS --max-time 60 -o "$out" -w '%{http_code} %{time_total}' "${auth[@]}" \
      --data "{\"organizationId\":\"$org\"}" "$SERVER_URL/api/auth/organization/delete")")
    [[ ${times[-1]} == 200\ * ]] || { cat "$out" >&2; die "organization/delete answered ${times[-1]}"; }
  done
  after=$(seq_scans "$db")
  local ms
  ms=$(printf '%s\n' "${times[@]}" | awk '{ v = $2 * 1000; if (v > m) m = v } END { printf "%.1f", m }')
  # The management API's first page of users, newest first, with and without the total.
  local list=() total=()
  for ((i = 1; i <= ${SCALE_ORG_ROUNDS:-3}; i++)); do
    list+=("$(curl -sS --max-time 60 -o "$out" -w '%{http_code} %{time_total}' -u "bench:$MASTER_PASSWORD" "$SERVER_URL/api/v2/users?per_page=50")")
    [[ ${list[-1]} == 200\ * ]] || { cat "$out" >&2; die "GET /api/v2/users answered ${list[-1]}"; }
    total+=("$(curl -sS --max-time 60 -o "$out" -w '%{http_code} %{time_total}' -u "bench:$MASTER_PASSWORD" "$SERVER_URL/api/v2/users?per_page=50&include_totals=true")")
    [[ ${total[-1]} == 200\ * ]] || { cat "$out" >&2; die "GET /api/v2/users with totals answered ${total[-1]}"; }
  done
  local slowest='{ v = $2 * 1000; if (v > m) m = v } END { printf "%.1f", m }'
  MGMT_NOTE[$n]="management API, first page of 50 users newest first: slowest of ${#list[@]} $(printf '%s\n' "${list[@]}" | awk "$slowest") ms; with include_totals (a COUNT of every user): $(printf '%s\n' "${total[@]}" | awk "$slowest") ms"
  log "${MGMT_NOTE[$n]}"
  ORG_NOTE[$n]="slowest of ${#times[@]} organization deletions (each with an API key, active in a session): $ms ms; sequential scans they made: $(join -t= <(echo "$before") <(echo "$after") | awk -F= '{ printf "%s%s %d", (NR > 1 ? ", " : ""), $1, $3 - $2 }')"
  log "${ORG_NOTE[$n]}"
}

# ---------------------------------------------------------------------------------------------------
# cleanup at the largest size

CLEANUP_NOTE=()

# The sampler: every 50 ms, the non-idle backends of the database with their transaction's age.
start_sampler() {
  local db=$1 out=$2
  echo "SELECT round(extract(epoch FROM clock_timestamp()) * 1000)::bigint, a.pid,
      round(extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)::bigint,
      coalesce(a.wait_event_type, '-'), left(regexp_replace(a.query, '\\s+', ' ', 'g'), 40)
    FROM pg_stat_activity a WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
      AND a.state <> 'idle' AND a.xact_start IS NOT NULL \\watch 0.05" \
    | setsid psql -X -q -tA -F'|' -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$db" >"$out" 2>"$out.err" &
  SAMPLER_PID=$!
  PIDS+=("$SAMPLER_PID")
}

measure_cleanup() {
  local db=$1 n=$2 expired=$3 samples="$TMP/activity.txt" start probe_out="$TMP/probe.txt" line single
  # For comparison, what the cleanup was before it was batched: one DELETE of every expired session, one
  # transaction holding every deleted row's lock until it ends (run here and rolled back).
  single=$( { echo 'BEGIN;'; echo '\timing on'; echo "DELETE FROM sessions WHERE expires_at <= $(date +%s%3N);"
    echo '\timing off'; echo 'ROLLBACK;'; } | pg -d "$db" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | head -n 1)
  log "one DELETE of all expired sessions (the old cleanup; rolled back): ${single:-?} ms"
  pg -d "$db" -c "VACUUM sessions" >/dev/null
  start_sampler "$db" "$samples"
  sleep 0.5
  start=$(date +%s%3N)
  start_on "$n" "cleanup-$n"
  log "the start-up maintenance is deleting $expired expired sessions; probing get-session (DB path) for $PROBE"
  BENCH_SCALE_KIND=cookie BENCH_SCALE_FILE="$TMP/cookies-$n.txt" \
    timeout -k 5 $(($(seconds_of "$PROBE") + 60)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"$PROBE" --latency \
    -s "$ROOT/bench/scale.lua" "$SERVER_URL/api/auth/get-session?disableCookieCache=true" >"$probe_out" 2>&1 || true
  # Done when the server logs its summary (a delete of more than one batch), or no expired row is left.
  local waited=0
  while ! grep -q '"table":"sessions"' "$SERVER_LOG" 2>/dev/null; do
    alive "$SERVER_PID" || die "the server exited during the cleanup"
    ((waited++ < 1800)) || die "no cleanup summary in the server log after 30 min"
    if ((waited % 5 == 0)) \
      && [[ $(pg -d "$db" -tAc "SELECT count(*) FROM sessions WHERE expires_at <= $(date +%s%3N)") == 0 ]]; then
      break
    fi
    sleep 1
  done
  local finished
  finished=$(date +%s%3N)
  sleep 1
  stop_pid "$SAMPLER_PID"
  line=$(grep '"table":"sessions"' "$SERVER_LOG" | grep 'cleanup deleted in batches' | tail -n 1)
  local rows batches longest left
  rows=$(grep -o '"rows":[0-9]*' <<<"$line" | cut -d: -f2)
  batches=$(grep -o '"batches":[0-9]*' <<<"$line" | cut -d: -f2)
  longest=$(grep -o '"longest_batch_ms":[0-9]*' <<<"$line" | cut -d: -f2)
  left=$(pg -d "$db" -tAc "SELECT count(*) FROM sessions WHERE expires_at <= $(date +%s%3N)")
  # Longest transaction of a DELETE seen; samples where any backend waited on a lock.
  local sampled waits count
  sampled=$(awk -F'|' '$5 ~ /^DELETE FROM sessions/ && $3 > max { max = $3 } END { print max + 0 }' "$samples")
  count=$(awk -F'|' '$5 ~ /^DELETE FROM sessions/' "$samples" | wc -l)
  waits=$(awk -F'|' '$4 == "Lock"' "$samples" | wc -l)
  local probe
  probe=$(bench_line "$probe_out" || echo "")
  CLEANUP_NOTE+=("- expired sessions generated: $expired (next to $n live ones); deleted by the server's start-up maintenance: ${rows:-?} rows in ${batches:-?} batches of ≤ 1,000, in $(awk -v ms=$((finished - start)) 'BEGIN { printf "%.1f", ms / 1000 }') s from the server's start (polled: ± 1 s); expired rows left: $left")
  CLEANUP_NOTE+=("- for comparison, the cleanup before this issue (one \`DELETE FROM sessions WHERE expires_at <= now\`, one transaction; run in a transaction and rolled back before the server started): **$(fmt "${single:-0}" 0) ms** holding every deleted row's lock")
  CLEANUP_NOTE+=("- **longest batch (the server's own timing of its slowest DELETE statement, so the longest any row lock was held): ${longest:-?} ms**")
  CLEANUP_NOTE+=("- pg_stat_activity sampled every 50 ms: the DELETE seen in $count samples, its transaction at most **$sampled ms** old; samples with any backend waiting on a lock: $waits")
  if [[ -n $probe ]]; then
    CLEANUP_NOTE+=("- get-session (DB path) during the cleanup, $PROBE from the server's start: $(awk -v v="$(field "$probe" rps)" 'BEGIN { printf "%.0f", v }') req/s, p50 $(field "$probe" p50_ms) ms, p99 **$(field "$probe" p99_ms) ms**, errors: $(field "$probe" errors_status) HTTP, $(field "$probe" errors_socket) socket")
  fi
  log "cleanup: ${rows:-?} rows, ${batches:-?} batches, longest ${longest:-?} ms; sampled longest DELETE transaction $sampled ms; lock waits seen: $waits"
  log "VACUUM sessions after the cleanup"
  pg -d "$db" -c "VACUUM ANALYZE sessions" >/dev/null
}

# ---------------------------------------------------------------------------------------------------
# one size

declare -A GEN SIZE_NOTE SCANS PLANS DB_OF SECRET_OF COOKIE_NAME_OF SEED_TOKEN_OF

# prepare_size <n>: the database, its load, and at the largest size the cleanup measurement.
prepare_size() {
  local n=$1 db expired=0
  db="latchkey_scale_${n}_$(random_hex 4)"
  DBS+=("$db")
  DB_OF[$n]=$db
  log "=== $n users: database $db"
  pg -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
  SECRET=$(random_hex 32)
  SECRET_OF[$n]=$SECRET
  # Migrations, and one real sign-up for its Argon2id hash.
  start_server "$db" "migrate-$n"
  local out="$TMP/signup.json" headers="$TMP/signup.headers" code
  code=$(curl_code "$out" -D "$headers" -H 'Content-Type: application/json' \
    --data "{\"name\":\"Seed\",\"email\":\"seed@scale.example\",\"password\":\"$PASSWORD\"}" "$SERVER_URL/api/auth/sign-up/email")
  [[ $code == 200 ]] || { cat "$out" >&2; die "sign-up answered HTTP $code"; }
  COOKIE_NAME_OF[$n]=$(tr -d '\r' <"$headers" | sed -n 's/^[Ss]et-[Cc]ookie:[[:space:]]*\([^=;]*session_token\)=.*/\1/p' | head -n 1)
  [[ -n ${COOKIE_NAME_OF[$n]} ]] || die "the sign-up set no session_token cookie"
  SEED_TOKEN_OF[$n]=$(grep -o '"token":"[^"]*"' "$out" | head -n 1 | cut -d'"' -f4)
  [[ -n ${SEED_TOKEN_OF[$n]} ]] || die "the sign-up returned no session token"
  stop_server
  if [[ $n == "$LARGEST" && $EXPIRED_PERCENT -gt 0 ]]; then expired=$((n * EXPIRED_PERCENT / 100)); fi
  load "$db" "$n" "$expired"
  GEN[$n]=$GEN_NOTE
  SIZE_NOTE[$n]=$SIZES_NOTE
  cookie_file "$n" "${COOKIE_NAME_OF[$n]}" "$TMP/cookies-$n.txt"
  if ((expired > 0)); then
    measure_cleanup "$db" "$n" "$expired"
    stop_server
  fi
}

# start_on <n> <label>: the server on size n's database, as measured (API-key cache off).
start_on() {
  SECRET=${SECRET_OF[$1]}
  local extra=()
  read -r -a extra <<<"${SCALE_SERVER_ENV:-}"
  start_server "${DB_OF[$1]}" "$2" LATCHKEY_API_KEYS_CACHE_TTL=0 "${extra[@]}"
}

# measure_round <n> <round>: the three scenarios on a fresh server.
measure_round() {
  local n=$1 round=$2 out="$TMP/probe.json" code db=${DB_OF[$1]}
  start_on "$n" "measure-$n-$round"
  # Each kind once by hand first: a wrong cookie, key or password would otherwise be measured as 401s.
  local probe_i=$(((n + 2) / 3))
  code=$(curl_code "$out" -H "Cookie: $(head -n 1 "$TMP/cookies-$n.txt")" "$SERVER_URL/api/auth/get-session?disableCookieCache=true")
  [[ $code == 200 ]] && grep -q '"session"' "$out" || { cat "$out" >&2; die "a generated session's cookie was refused (HTTP $code)"; }
  code=$(curl_code "$out" -H "x-api-key: lk_$(printf '%048d' "$probe_i")" "$SERVER_URL/api/auth/check")
  [[ $code == 200 ]] || { cat "$out" >&2; die "a generated API key was refused (HTTP $code)"; }
  code=$(curl_code "$out" -H 'Content-Type: application/json' \
    --data "{\"email\":\"u$probe_i@scale.example\",\"password\":\"$PASSWORD\"}" "$SERVER_URL/api/auth/sign-in/email")
  [[ $code == 200 ]] || { cat "$out" >&2; die "a generated user's sign-in was refused (HTTP $code)"; }

  local scans_before scans_after
  scans_before=$(seq_scans "$db")
  BENCH_SCALE_KIND=cookie BENCH_SCALE_FILE="$TMP/cookies-$n.txt" \
    measure "get-session, DB path" "$n" "$round" "$CONNECTIONS" "$SERVER_URL/api/auth/get-session?disableCookieCache=true"
  BENCH_SCALE_KIND=key BENCH_SCALE_COUNT=$n \
    measure "API-key check, DB path" "$n" "$round" "$CONNECTIONS" "$SERVER_URL/api/auth/check"
  BENCH_SCALE_KIND=sign_in BENCH_SCALE_COUNT=$n BENCH_SCALE_PASSWORD=$PASSWORD \
    measure "sign-in" "$n" "$round" "$SIGNIN_CONNECTIONS" "$SERVER_URL/api/auth/sign-in/email" --timeout 10s
  scans_after=$(seq_scans "$db")
  SCANS[$n]+="$( [[ -n ${SCANS[$n]:-} ]] && echo '; ')round $round: $(join -t= <(echo "$scans_before") <(echo "$scans_after") | awk -F= '{ printf "%s%s %d", (NR > 1 ? ", " : ""), $1, $3 - $2 }')"
  stop_server
}

# extras <n>: query plans, organization deletions and the management list on size n.
extras() {
  local n=$1
  start_on "$n" "extras-$n"
  SEED_TOKEN=${SEED_TOKEN_OF[$n]}
  PLANS[$n]=$(explain "${DB_OF[$n]}" "$n")
  org_deletions "${DB_OF[$n]}" "$n"
  stop_server
}

BENCH_START=$SECONDS
for n in "${SIZES[@]}"; do prepare_size "$n"; done
# Rounds alternate the sizes, so that the machine's drift (it is shared) falls on every size alike.
for ((round = 1; round <= ROUNDS; round++)); do
  for n in "${SIZES[@]}"; do measure_round "$n" "$round"; done
done
for n in "${SIZES[@]}"; do extras "$n"; done

# ---------------------------------------------------------------------------------------------------
# report

LABELS=("get-session, DB path" "API-key check, DB path" "sign-in")
SMALLEST=${SIZES[0]}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# stat <array name> <label> <n>: the median over the rounds.
stat() {
  local -n values=$1
  local r all=()
  for ((r = 1; r <= ROUNDS; r++)); do all+=("${values[$2/$3/$r]}"); done
  median "${all[@]}"
}
rounds_of() {
  local r all=()
  for ((r = 1; r <= ROUNDS; r++)); do all+=("$(fmt "${P99[$1/$2/$r]}" 1)"); done
  echo "${all[*]}"
}
table() {
  local header="| scenario |" rule="|---|" label n
  for n in "${SIZES[@]}"; do
    header+=" $(fmt "$n" 0) users: req/s | p50 ms | p99 ms |"
    rule+="---:|---:|---:|"
  done
  ((${#SIZES[@]} > 1)) && { header+=" p99 ratio $LARGEST / $SMALLEST |"; rule+="---:|"; }
  echo "$header"
  echo "$rule"
  for label in "${LABELS[@]}"; do
    local row="| $label |"
    for n in "${SIZES[@]}"; do
      local cell errors=0 r
      for ((r = 1; r <= ROUNDS; r++)); do errors=$((errors + ${ERRS[$label/$n/$r]})); done
      cell=$(fmt "$(stat RPS "$label" "$n")" 0)
      ((errors > 0)) && cell+=" **($errors errors)**"
      row+=" $cell | $(fmt "$(stat P50 "$label" "$n")" 2) | $(fmt "$(stat P99 "$label" "$n")" 2) |"
    done
    if ((${#SIZES[@]} > 1)); then
      row+=" **$(awk -v a="$(stat P99 "$label" "$LARGEST")" -v b="$(stat P99 "$label" "$SMALLEST")" 'BEGIN { printf "%.2f", a / b }')** |"
    fi
    echo "$row"
  done
}

TABLE=$(table)
mkdir -p "$(dirname "$RESULTS")"
{
  echo "# Latchkey at scale (PostgreSQL)"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)), shared with other work: absolute figures are noisy, the ratios between sizes are the point"
  if commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock migrations 2>/dev/null || commit="$commit (with uncommitted changes)"
    echo "- commit: $commit; PostgreSQL $(pg -d postgres -tAc 'SHOW server_version'), shared_buffers $(pg -d postgres -tAc 'SHOW shared_buffers')"
  fi
  echo "- wrk $(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }'): -t$THREADS -c$CONNECTIONS -d$DURATION --latency after a $WARMUP warm-up (sign-in: -c$SIGNIN_CONNECTIONS), each on a freshly started server, $ROUNDS rounds alternating the sizes; every request names a different generated row (get-session: $SAMPLE sessions in turn; keys and sign-ins: uniform over all N); API-key cache off; rate limits raised to 10^9"
  echo "- each size: N users, N credential accounts (one real Argon2id hash, from a sign-up through the API), N live sessions, N API keys"
  echo
  echo "$TABLE"
  echo
  echo "Medians of $ROUNDS rounds; the rounds alternate the sizes (p99 per round, ms):"
  echo
  for label in "${LABELS[@]}"; do
    echo "- $label: $(for n in "${SIZES[@]}"; do printf '%s users %s; ' "$n" "$(rounds_of "$label" "$n")"; done | sed 's/; $//')"
  done
  for n in "${SIZES[@]}"; do
    echo
    echo "$n users:"
    echo
    echo "- generated in ${GEN[$n]}"
    echo "- sizes: ${SIZE_NOTE[$n]}"
    echo "- sequential scans of users, accounts, sessions, api_keys during the measured runs: ${SCANS[$n]}"
    echo "- ${ORG_NOTE[$n]}"
    echo "- ${MGMT_NOTE[$n]}"
  done
  if ((${#CLEANUP_NOTE[@]})); then
    echo
    echo "## Expired-session cleanup at $LARGEST users"
    echo
    printf '%s\n' "${CLEANUP_NOTE[@]}"
  fi
  echo
  echo "## Query plans at $LARGEST users (EXPLAIN ANALYZE, a row in the middle)"
  echo
  echo '```'
  echo "${PLANS[$LARGEST]}"
  echo '```'
} >"$RESULTS"
printf '\n%s\n\n' "$TABLE"
log "report written to $RESULTS (took $(human_seconds $((SECONDS - BENCH_START))))"
((FLAGGED == 0)) || die "$FLAGGED run(s) saw errors; their numbers are not valid (see the report)"
