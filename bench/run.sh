#!/usr/bin/env bash
# Latchkey benchmark: throughput and latency of the session hot paths against an axum hello-world
# baseline, on this machine, over 127.0.0.1 only. Usage:
#
#   bash bench/run.sh
#
# It builds the release binaries, runs the scenarios below with wrk, prints a Markdown table and writes it
# to bench/results/latest.md. Default settings take about 2 minutes once the release build is done.
#
#   baseline (axum hello)              GET /                                        (examples/hello.rs)
#   get-session (cookie cache)         GET /api/auth/get-session with both cookies  (no DB read)
#   get-session (DB, SQLite)           ... ?disableCookieCache=true                 (one DB read)
#   get-session (Bearer session token) Authorization: Bearer <session token>      (remembered, no DB read)
#   sign-in                            POST /api/auth/sign-in/email                 (Argon2id-bound)
#   get-session under sign-in flood    cached get-session, few connections, while sign-ins saturate the CPU
#   check with x-api-key               GET /api/auth/check, x-api-key               (key cache, no DB read)
#   api-key/verify                     POST /api/auth/api-key/verify {key}          (key cache, no DB read)
#   check with session cookie          GET /api/auth/check with both cookies        (cookie cache + tenant)
#   check with Bearer extension token  GET /api/auth/check, Authorization: Bearer   (HS256 + membership cache)
#   GET /v1/me (service token)         Authorization: Bearer <ES256 service token>  (verified-token cache)
#   plain insert (SQLite)              one INSERT + commit per request (examples/insert_baseline.rs)
#   POST /v1/token (SQLite)            client key + user secret → ES256 JWT + record  (ratio: to plain insert)
#   get-session (DB, PostgreSQL)       as the SQLite one, on a throw-away database  (skipped if unreachable)
#   plain insert / POST /v1/token (PostgreSQL)   as on SQLite
#   client_credentials, ES256          POST /oauth/token, a machine client           (ratio: to hello)
#   RS256 signing floor                a server that only signs an RS256 JWT per request (examples/sign_floor.rs)
#   client_credentials, RS256          as above for an RS256 API                     (ratio: to the signing floor)
#   GET /userinfo                      Authorization: Bearer <RS256 access token>
#   refresh_token grant (SQLite, PostgreSQL)  rotating refresh tokens, one family per connection
#                                      (ratio: to the plain insert on the same database)
#   code flow                          GET /authorize with the SSO session → POST /oauth/token (PKCE); flows/s = req/s ÷ 2
#   token handler proxy                GET /auth/bench/api/hello with both token cookies: the access-token cookie
#                                      opened, the request forwarded to the hello server (the vendor's apiUpstream)
#                                      with a Bearer token on a kept connection (ratio: to that hello server
#                                      driven directly with the same request)
#   token handler proxy, working upstream   the same to hello's /work, which spends 200 µs of CPU per request
#                                      (HELLO_WORK_MICROS) as an API doing something would (ratio: to /work direct)
#   token handler check                GET /auth/bench/check with the __Secure-at cookie (forward-auth; ratio: to hello)
#
# Environment (all optional):
#   BENCH_DURATION=10s          length of each measured wrk run (wrk syntax: 10s, 1m)
#   BENCH_WARMUP=2s             unmeasured wrk run before each GET scenario (0 disables)
#   BENCH_THREADS=2             wrk threads       BENCH_CONNECTIONS=32          wrk connections (GET)
#   BENCH_SIGNIN_CONNECTIONS=8  connections for sign-in (Argon2id allows ~40 sign-ins/s per core)
#   BENCH_FLOOD_CONNECTIONS=4   connections of the get-session run during the sign-in flood (1 thread)
#   BENCH_ADJACENT=1            re-measure the hello baseline right before each throughput scenario, with
#                               the scenario's own request, and take that scenario's ratio against it
#                               (0: every ratio against the first, plain GET / run)
#   BENCH_ADJACENT_DURATION=5s  length of each adjacent baseline run
#   BENCH_ROUNDS=1              throughput scenarios run this many (adjacent hello, scenario) pairs and report
#                               the pair with the median ratio (3 or 5 makes one noisy minute matter less)
#   BENCH_PORT_BASE=18080       first of 20 ports tried for the servers
#   BENCH_PG_HOST=127.0.0.1 BENCH_PG_PORT=5432 BENCH_PG_USER=postgres   (PGPASSWORD is honoured)
#   BENCH_SKIP_POSTGRES=1       skip the PostgreSQL scenarios
#   BENCH_ONLY=all              comma list of groups to run: sessions (get-session, sign-in, flood), keys
#                               (api keys, check, extension tokens), service (/v1), oauth (/oauth/token,
#                               /userinfo, the code flow), bff (the token handler's proxy and check; its
#                               vendor, client and cookies are set up with curl through the handler's own
#                               sign-in), audit (sign-in and cached get-session with the audit log on
#                               and off, each on a server of its own; a get-session flood must write no
#                               audit row), postgres
#   BENCH_SKIP_BUILD=1          use the binaries already in $CARGO_TARGET_DIR/release
#   BENCH_BASELINE_ONLY=1       only the hello baseline (checks the harness without Latchkey)
#   BENCH_SERVER_LOG=<filter>   LATCHKEY_LOG for the server (default: the server's own default)
#   BENCH_RESULTS=<file>        where the report goes (default bench/results/latest.md)
#   CARGO_TARGET_DIR            default /tmp/latchkey-target
#
# Rate limits are raised to 1e9 for the run (sign-in per IP, sign-in failures per email, sign-up per IP,
# verify/token per IP):
# the defaults would turn the sign-in scenario into a 429 benchmark. The report says so.
# Exit status: 0 when every scenario ran without errors, 1 on failure or when a scenario saw errors
# (HTTP status >= 400 or socket errors); the table is still printed and written in the latter case.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/latchkey-target}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
SIGNIN_CONNECTIONS=${BENCH_SIGNIN_CONNECTIONS:-8}
FLOOD_CONNECTIONS=${BENCH_FLOOD_CONNECTIONS:-4}
ADJACENT=${BENCH_ADJACENT:-1}
ADJACENT_DURATION=${BENCH_ADJACENT_DURATION:-5s}
ROUNDS=${BENCH_ROUNDS:-1}
PORT_BASE=${BENCH_PORT_BASE:-18080}
PG_HOST=${BENCH_PG_HOST:-127.0.0.1}
PG_PORT=${BENCH_PG_PORT:-5432}
PG_USER=${BENCH_PG_USER:-postgres}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results/latest.md}
SERVER_BIN=$CARGO_TARGET_DIR/release/latchkey
HELLO_BIN=$CARGO_TARGET_DIR/release/examples/hello
INSERT_BIN=$CARGO_TARGET_DIR/release/examples/insert_baseline
FLOOR_BIN=$CARGO_TARGET_DIR/release/examples/sign_floor
ONLY=${BENCH_ONLY:-all}
MASTER_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

# wants <group>: true if BENCH_ONLY selects the group.
wants() { [[ $ONLY == all || ",$ONLY," == *",$1,"* ]]; }

# More environment for the next start_server (the audit group switches the audit log off with it).
EXTRA_SERVER_ENV=()
# Lines for the report below the table (the audit group's on/off comparison).
NOTES=()

BENCH_NAME="Bench"
BENCH_EMAIL="bench@example.com"
BENCH_PASSWORD="correct horse battery staple"
RATE_LIMIT_ENV=(
  LATCHKEY_RATE_LIMIT_SIGN_IN_PER_IP=1000000000
  LATCHKEY_RATE_LIMIT_SIGN_IN_FAILURES_PER_EMAIL=1000000000
  LATCHKEY_RATE_LIMIT_SIGN_UP_PER_IP=1000000000
  LATCHKEY_RATE_LIMIT_VERIFY_PER_IP=1000000000
)

# ---------------------------------------------------------------------------------------------------
# helpers

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# Seconds in a wrk duration ("10s", "2m", "1h", "10").
seconds_of() {
  local d=$1
  case $d in
    *h) echo $(( ${d%h} * 3600 )) ;;
    *m) echo $(( ${d%m} * 60 )) ;;
    *s) echo "${d%s}" ;;
    *) echo "$d" ;;
  esac
}

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# Processes this script started; cleanup stops each of them by pid, nothing else.
PIDS=()
TMP=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-bench.XXXXXX")
PG_DB=""

pg() { PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"; }

# True while the process exists and is not a zombie.
alive() {
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z ]]
}

# SIGTERM, up to 10 s to exit, then SIGKILL; reaps the child and forgets it. The servers are started
# with setsid, so each leads its own process group: the group is signalled too, so that nothing a
# server (or a wrapper script standing in for it) started outlives the run.
stop_pid() {
  local pid=$1 target=$1 i
  kill -0 -- "-$pid" 2>/dev/null && target="-$pid"
  if alive "$pid"; then
    kill -TERM -- "$target" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL -- "$target" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || true
  # Leftover members of the server's own group, if any.
  if [[ $target == -* ]]; then kill -KILL -- "$target" 2>/dev/null || true; fi
  forget_pid "$pid"
}

forget_pid() {
  local kept=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

drop_pg_db() {
  if [[ -n $PG_DB ]]; then
    pg -d postgres -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 \
      || printf 'bench: warning: could not drop database %s\n' "$PG_DB" >&2
    PG_DB=""
  fi
}

cleanup() {
  local rc=$?
  set +e
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  drop_pg_db
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port in PORT_BASE..PORT_BASE+19 that nothing listens on.
pick_port() {
  local p
  for ((p = PORT_BASE; p < PORT_BASE + 20; p++)); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port in $PORT_BASE-$((PORT_BASE + 19)) (set BENCH_PORT_BASE)"
}

# Waits until GET $url answers 200 while process $pid lives; $log is shown if it does not.
wait_http_200() {
  local url=$1 pid=$2 logfile=$3 limit=${4:-60} start=$SECONDS code
  while true; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
    [[ $code == 200 ]] && return 0
    if ! alive "$pid"; then
      tail -n 40 "$logfile" >&2 || true
      die "the server exited before $url answered 200 (log above)"
    fi
    if ((SECONDS - start >= limit)); then
      tail -n 40 "$logfile" >&2 || true
      die "$url did not answer 200 within ${limit} s (last status: ${code:-none}; log above)"
    fi
    sleep 0.2
  done
}

rss_mb() { awk -v key="$2:" '$1 == key { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# Results, in report order.
ROW_NAMES=()
declare -A RPS P50 P99 ERR_STATUS ERR_SOCKET ROW_NOTE
# Rows whose ratio is to another row rather than to hello (token issuance to a plain insert).
declare -A BASE_OF
# Per-scenario ratios of every round when BENCH_ROUNDS > 1.
declare -A ROUNDS_NOTE
FLAGGED=0
BASELINE_RPS=""

# adjacent_baseline <scenario> <script> <url>: the hello baseline measured again right before a scenario,
# with the scenario's own wrk script and path (hello answers every path and method), so that
#  - the scenario's ratio is taken against the machine as it is at that moment (this machine is shared,
#    and load from elsewhere drifts over a run), and
#  - wrk, which shares the 2 cores with the server, does the same work on both sides (a 1 KB cookie
#    header or a JSON body costs the load generator too); the ratio is then the server's own cost.
declare -A ADJ
adjacent_baseline() {
  local name=$1 script=$2 url=$3 out="$TMP/adjacent.$RANDOM$RANDOM.txt" line path
  [[ $ADJACENT == 1 && -n ${HELLO_URL:-} ]] || return 0
  path=/${url#http://*/}
  timeout -k 5 $(( $(seconds_of "$ADJACENT_DURATION") + 30 )) wrk -t"$THREADS" -c"$CONNECTIONS" \
    -d"$ADJACENT_DURATION" --latency -s "$ROOT/bench/$script" "${HELLO_URL%/}$path" >"$out" 2>&1 \
    || die "wrk failed for the adjacent baseline of '$name'"
  line=$(grep '^LATCHKEY_BENCH ' "$out" | tail -n 1) || die "no LATCHKEY_BENCH line for the adjacent baseline"
  line=${line#*rps=}
  ADJ[$name]=${line%% *}
  log "adjacent baseline for '$name': ${ADJ[$name]} req/s"
}

# run_wrk <scenario> <script> <url> <threads> <connections> <duration> [extra wrk args...]
# Runs wrk once (bounded by timeout), prints its output and records its LATCHKEY_BENCH line. Throughput
# scenarios (the default threads and connections) get an adjacent baseline first.
run_wrk() {
  local name=$1 script=$2 url=$3 threads=$4 conns=$5 dur=$6
  shift 6
  local limit rounds=1 round
  local -a outs=() ratios=() adjs=()
  limit=$(( $(seconds_of "$dur") + 30 ))
  local throughput=0
  if [[ $threads == "$THREADS" && $conns == "$CONNECTIONS" && $script != hello.lua ]]; then
    throughput=1
    rounds=$ROUNDS
  fi
  for ((round = 1; round <= rounds; round++)); do
    local out="$TMP/wrk.$RANDOM$RANDOM.txt"
    ((throughput)) && adjacent_baseline "$name" "$script" "$url"
    log "wrk: $name — -t$threads -c$conns -d$dur $url (round $round of $rounds)"
    if ! timeout -k 5 "$limit" wrk -t"$threads" -c"$conns" -d"$dur" --latency "$@" \
        -s "$ROOT/bench/$script" "$url" >"$out" 2>&1; then
      cat "$out" >&2
      die "wrk failed for scenario '$name'"
    fi
    sed 's/^/    /' "$out" >&2
    outs+=("$out")
    adjs+=("${ADJ[$name]:-$BASELINE_RPS}")
    local line rps
    line=$(grep '^LATCHKEY_BENCH ' "$out" | tail -n 1) || die "no LATCHKEY_BENCH line from wrk for '$name'"
    rps=${line#*rps=}
    ratios+=("$(awk -v a="${rps%% *}" -v b="${adjs[-1]}" 'BEGIN { if (b > 0) printf "%.6f", a / b; else print 0 }')")
  done
  # The round with the median ratio stands for the scenario (with its own adjacent baseline).
  local pick=0
  if ((rounds > 1)); then
    pick=$(for i in "${!ratios[@]}"; do echo "${ratios[$i]} $i"; done | sort -n | awk -v m=$(( rounds / 2 )) 'NR == m + 1 { print $2 }')
    log "ratios of '$name' over $rounds rounds: ${ratios[*]} — median round $((pick + 1))"
    ROUNDS_NOTE[$name]="median of $rounds: $(printf '%.3f ' "${ratios[@]}")"
  fi
  ((throughput)) && ADJ[$name]=${adjs[$pick]}
  record "$name" "${outs[$pick]}"
}

# record <scenario> <wrk output file>
record() {
  local name=$1 line
  line=$(grep '^LATCHKEY_BENCH ' "$2" | tail -n 1) || die "no LATCHKEY_BENCH line from wrk for '$name'"
  local kv k v
  declare -A f=()
  for kv in ${line#LATCHKEY_BENCH }; do k=${kv%%=*}; v=${kv#*=}; f[$k]=$v; done
  ROW_NAMES+=("$name")
  RPS[$name]=${f[rps]}
  P50[$name]=${f[p50_ms]}
  P99[$name]=${f[p99_ms]}
  ERR_STATUS[$name]=${f[errors_status]}
  ERR_SOCKET[$name]=${f[errors_socket]}
  if ((${f[errors_status]} > 0 || ${f[errors_socket]} > 0)); then
    FLAGGED=$((FLAGGED + 1))
    printf 'bench: warning: scenario "%s" saw %s HTTP errors (status >= 400) and %s socket errors\n' \
      "$name" "${f[errors_status]}" "${f[errors_socket]}" >&2
  fi
}

skip_row() { ROW_NAMES+=("$1"); ROW_NOTE[$1]=$2; }

warm_up() {
  local script=$1 url=$2
  [[ $WARMUP == 0 || $WARMUP == 0s ]] && return 0
  timeout -k 5 $(( $(seconds_of "$WARMUP") + 30 )) \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$ROOT/bench/$script" "$url" >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------------------------------
# Latchkey server lifecycle

SERVER_PID=""
SERVER_PORT=""
SERVER_URL=""
SERVER_LOG=""
COOKIE=""

# start_server <database url> <label>
start_server() {
  local db_url=$1 label=$2
  SERVER_PORT=$(pick_port)
  SERVER_URL="http://127.0.0.1:$SERVER_PORT"
  SERVER_LOG="$TMP/server-$label.log"
  local envs=(
    "PATH=$PATH" "HOME=${HOME:-/tmp}"
    "LATCHKEY_LISTEN=127.0.0.1:$SERVER_PORT"
    "LATCHKEY_DATABASE_URL=$db_url"
    "LATCHKEY_BASE_URL=http://localhost:$SERVER_PORT"
    "LATCHKEY_SECRET=$(random_hex 32)"
    "MASTER_USERNAME=bench" "MASTER_PASSWORD=$MASTER_PASSWORD"
    "${RATE_LIMIT_ENV[@]}"
  )
  [[ -n ${BENCH_SERVER_LOG:-} ]] && envs+=("LATCHKEY_LOG=$BENCH_SERVER_LOG")
  envs+=("${EXTRA_SERVER_ENV[@]}")
  log "starting latchkey ($label) on $SERVER_URL, log $SERVER_LOG ${EXTRA_SERVER_ENV[*]}"
  log "rate limits raised for the benchmark: ${RATE_LIMIT_ENV[*]}"
  # A clean environment and the temp dir as working directory: no stray LATCHKEY_* variable or
  # latchkey.toml changes what is measured.
  (cd "$TMP" && exec setsid env -i "${envs[@]}" "$SERVER_BIN" serve) >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_http_200 "$SERVER_URL/healthz" "$SERVER_PID" "$SERVER_LOG" 60
  log "latchkey is up (pid $SERVER_PID)"
}

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  log "stopping latchkey (pid $SERVER_PID)"
  stop_pid "$SERVER_PID"
  SERVER_PID=""
}

# Signs up the bench account and sets COOKIE to "<session_token pair>; <session_data pair>".
sign_up() {
  local headers="$TMP/signup.headers" body="$TMP/signup.body" code
  code=$(curl -sS --max-time 15 -o "$body" -D "$headers" -w '%{http_code}' \
    -H 'Content-Type: application/json' \
    --data "{\"name\":\"$BENCH_NAME\",\"email\":\"$BENCH_EMAIL\",\"password\":\"$BENCH_PASSWORD\"}" \
    "$SERVER_URL/api/auth/sign-up/email") || die "sign-up request failed"
  if [[ $code != 200 ]]; then
    cat "$headers" "$body" >&2 || true
    die "sign-up answered HTTP $code, expected 200"
  fi
  local pairs token data
  pairs=$(tr -d '\r' <"$headers" | sed -n 's/^[Ss][Ee][Tt]-[Cc][Oo][Oo][Kk][Ii][Ee]:[[:space:]]*\([^;]*\).*$/\1/p')
  token=$(grep -E '^[^=]*session_token=.' <<<"$pairs" | tail -n 1 || true)
  data=$(grep -E '^[^=]*session_data=.' <<<"$pairs" | tail -n 1 || true)
  if [[ -z $token || -z $data ]]; then
    cat "$headers" >&2
    die "sign-up did not set both session_token and session_data cookies (headers above)"
  fi
  COOKIE="$token; $data"
  # The raw session token (Better Auth's bearer plugin takes it as `Authorization: Bearer`).
  SESSION_TOKEN=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$body")
  log "signed up $BENCH_EMAIL; cookies: ${token%%=*}, ${data%%=*}"
}

# post_json <path> <json body> <output file>: a cookie-authenticated POST from the trusted origin; fails
# unless it answers 200.
post_json() {
  local path=$1 data=$2 out=$3 code
  code=$(curl -sS --max-time 15 -o "$out" -w '%{http_code}' -H 'Content-Type: application/json' \
    -H "Cookie: $COOKIE" -H "Origin: http://localhost:$SERVER_PORT" --data "$data" "$SERVER_URL$path") \
    || die "POST $path failed"
  if [[ $code != 200 ]]; then
    cat "$out" >&2 || true
    die "POST $path answered HTTP $code, expected 200"
  fi
}

# The first "<field>":"<string>" of a JSON file.
json_field() { grep -o "\"$1\":\"[^\"]*\"" "$2" | head -n 1 | cut -d'"' -f4; }

# Creates a service client, a user and a token; sets CLIENT_KEY, USER_ID, USER_SECRET, SERVICE_TOKEN.
service_setup() {
  local out="$TMP/service.json" code
  code=$(curl -sS --max-time 15 -o "$out" -w '%{http_code}' -u "bench:$MASTER_PASSWORD" \
    -H 'Content-Type: application/json' --data '{"name":"bench"}' "$SERVER_URL/v1/clients") || die "POST /v1/clients failed"
  [[ $code == 201 ]] || { cat "$out" >&2; die "POST /v1/clients answered HTTP $code, expected 201"; }
  CLIENT_KEY=$(json_field apiKey "$out")
  code=$(curl -sS --max-time 15 -o "$out" -w '%{http_code}' -H "x-api-key: $CLIENT_KEY" \
    -H 'Content-Type: application/json' --data '{"name":"bench user"}' "$SERVER_URL/v1/users") || die "POST /v1/users failed"
  [[ $code == 201 ]] || { cat "$out" >&2; die "POST /v1/users answered HTTP $code, expected 201"; }
  USER_ID=$(json_field userId "$out")
  USER_SECRET=$(json_field secret "$out")
  code=$(curl -sS --max-time 15 -o "$out" -w '%{http_code}' -H "x-api-key: $CLIENT_KEY" \
    -H 'Content-Type: application/json' --data "{\"userId\":\"$USER_ID\",\"secret\":\"$USER_SECRET\"}" \
    "$SERVER_URL/v1/token") || die "POST /v1/token failed"
  [[ $code == 200 ]] || { cat "$out" >&2; die "POST /v1/token answered HTTP $code, expected 200"; }
  SERVICE_TOKEN=$(json_field accessToken "$out")
  [[ -n $SERVICE_TOKEN ]] || die "POST /v1/token returned no token"
  export BENCH_CLIENT_KEY=$CLIENT_KEY BENCH_USER_ID=$USER_ID BENCH_USER_SECRET=$USER_SECRET
}

# plain_insert <label> <database url>: the plain-insert baseline (one INSERT + commit per request) on that
# database, measured as the row "plain insert (<label>)".
plain_insert() {
  local label=$1 insert_db=$2 port log
  # token.lua wants a client and user; the insert baseline reads neither (only the load is the same).
  export BENCH_CLIENT_KEY=${BENCH_CLIENT_KEY:-unused} BENCH_USER_ID=${BENCH_USER_ID:-unused} \
    BENCH_USER_SECRET=${BENCH_USER_SECRET:-unused}
  port=$(pick_port)
  log="$TMP/insert-$label.log"
  log "starting the plain-insert baseline ($label) on 127.0.0.1:$port"
  INSERT_LISTEN="127.0.0.1:$port" INSERT_DATABASE_URL=$insert_db setsid "$INSERT_BIN" >"$log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local i
  for ((i = 0; i < 100; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -X POST --max-time 2 "http://127.0.0.1:$port/" || true) == 200 ]] && break
    alive "$pid" || { cat "$log" >&2; die "the insert baseline exited"; }
    sleep 0.2
  done
  warm_up token.lua "http://127.0.0.1:$port/"
  # 32 connections queue for SQLite's one writer: the slowest waits over a second (wrk's default timeout
  # is 2 s).
  run_wrk "plain insert ($label)" token.lua "http://127.0.0.1:$port/" "$THREADS" "$CONNECTIONS" "$DURATION" --timeout 10s
  stop_pid "$pid"
}

# bench_token <label> <database url for the insert baseline>: the plain-insert baseline on that database,
# then POST /v1/token on the running server; the token row's ratio is to the plain insert.
bench_token() {
  local label=$1 insert_db=$2
  plain_insert "$label" "$insert_db"
  warm_up token.lua "$SERVER_URL/v1/token"
  run_wrk "POST /v1/token ($label)" token.lua "$SERVER_URL/v1/token" "$THREADS" "$CONNECTIONS" "$DURATION"
  BASE_OF["POST /v1/token ($label)"]="plain insert ($label)"
}

# mgmt_post <path> <json> <output file>: a management API call with the master credentials; fails unless 201.
mgmt_post() {
  local code
  code=$(curl -sS --max-time 15 -o "$3" -w '%{http_code}' -u "bench:$MASTER_PASSWORD" \
    -H 'Content-Type: application/json' --data "$2" "$SERVER_URL$1") || die "POST $1 failed"
  [[ $code == 201 ]] || { cat "$3" >&2; die "POST $1 answered HTTP $code, expected 201"; }
}

# The PKCE pair of the OAuth scenarios (RFC 7636's S256 of the verifier).
PKCE_VERIFIER=dBjftJeZ4CVP-mJ92K1uDEqaJ7iU9ecLw6NLjb7XEnj
PKCE_CHALLENGE=Eihd0elJro_jAa4mLFnh1idTXjTlIFmR2Z8n01fsLYM

# Capability 5's set-up on the running server (the bench account signed in, COOKIE set): an ES256 and an
# RS256 API, a machine client granted both, and a public SPA client. Sets MACHINE_ID, MACHINE_SECRET,
# SPA_ID, SPA_REDIRECT.
oauth_setup() {
  local out="$TMP/oauth.json"
  mgmt_post /api/v2/resource-servers '{"name":"Bench ES","identifier":"https://bench/es","signing_alg":"ES256","allow_offline_access":true,"scopes":[{"value":"read:bench"}]}' "$out"
  mgmt_post /api/v2/resource-servers '{"name":"Bench RS","identifier":"https://bench/rs","signing_alg":"RS256","scopes":[{"value":"read:bench"}]}' "$out"
  mgmt_post /api/v2/clients '{"name":"bench machine","app_type":"non_interactive"}' "$out"
  MACHINE_ID=$(json_field client_id "$out")
  MACHINE_SECRET=$(json_field client_secret "$out")
  mgmt_post /api/v2/client-grants "{\"client_id\":\"$MACHINE_ID\",\"audience\":\"https://bench/es\",\"scope\":[\"read:bench\"]}" "$out"
  mgmt_post /api/v2/client-grants "{\"client_id\":\"$MACHINE_ID\",\"audience\":\"https://bench/rs\",\"scope\":[\"read:bench\"]}" "$out"
  SPA_REDIRECT="http://localhost:$SERVER_PORT/cb"
  mgmt_post /api/v2/clients "{\"name\":\"bench spa\",\"app_type\":\"spa\",\"callbacks\":[\"$SPA_REDIRECT\"]}" "$out"
  SPA_ID=$(json_field client_id "$out")
}

# authorize_path <scope> [audience]: the SPA's /authorize path and query (PKCE S256).
authorize_path() {
  local path="/authorize?response_type=code&client_id=$SPA_ID&redirect_uri=http%3A%2F%2Flocalhost%3A$SERVER_PORT%2Fcb"
  path+="&scope=${1// /%20}&state=bench&code_challenge=$PKCE_CHALLENGE&code_challenge_method=S256"
  [[ -n ${2:-} ]] && path+="&audience=$2"
  echo "$path"
}

# code_flow_tokens <scope> [audience]: one code flow with the bench session; prints the token answer.
code_flow_tokens() {
  local location code
  location=$(curl -sS --max-time 10 -o /dev/null -w '%{redirect_url}' -H "Cookie: $COOKIE" \
    "$SERVER_URL$(authorize_path "$@")") || die "GET /authorize failed"
  code=$(sed -n 's/.*[?&]code=\([^&]*\).*/\1/p' <<<"$location")
  [[ -n $code ]] || die "/authorize gave no code (Location: $location)"
  curl -sS --max-time 10 --data "grant_type=authorization_code&client_id=$SPA_ID&code=$code" \
    --data-urlencode "redirect_uri=$SPA_REDIRECT" --data "code_verifier=$PKCE_VERIFIER" "$SERVER_URL/oauth/token" \
    || die "the code exchange failed"
}

# refresh_pool <file> <count>: that many refresh-token families (scope offline_access read:bench for the
# ES256 API: the grant without an ID token), one token per line.
refresh_pool() {
  local i answer token
  : >"$1"
  for ((i = 0; i < $2; i++)); do
    answer=$(code_flow_tokens "offline_access read:bench" "https%3A%2F%2Fbench%2Fes")
    token=$(grep -o '"refresh_token":"[^"]*"' <<<"$answer" | cut -d'"' -f4)
    [[ -n $token ]] || die "no refresh token: $answer"
    echo "$token" >>"$1"
  done
}

# bench_refresh <label> <insert database url>: the plain insert, then refresh-token grants against it.
bench_refresh() {
  local label=$1
  plain_insert "$label" "$2"
  # Enough families for the warm-up and the run (each is used by one request at a time).
  refresh_pool "$TMP/refresh-$label.txt" $((CONNECTIONS * 2))
  export BENCH_REFRESH_FILE="$TMP/refresh-$label.txt" BENCH_CLIENT_ID=$SPA_ID BENCH_THREADS_COUNT=$THREADS
  run_wrk "refresh_token grant ($label)" refresh.lua "$SERVER_URL/oauth/token" "$THREADS" "$CONNECTIONS" "$DURATION"
  BASE_OF["refresh_token grant ($label)"]="plain insert ($label)"
}

# Fails unless GET <path> with header <name: value> answers 200.
check_header() {
  local path=$1 header=$2 code
  code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H "$header" "$SERVER_URL$path") \
    || die "GET $path failed"
  [[ $code == 200 ]] || die "GET $path with ${header%%:*} answered HTTP $code, expected 200"
}

# set_cookie_value <headers file> <name>: the value the Set-Cookie lines of a `curl -D` dump give the cookie
# <name> (the last one). curl's own cookie jar is no use here: it drops `Secure` cookies over http.
set_cookie_value() {
  tr -d '\r' <"$1" | sed -n "s/^[Ss][Ee][Tt]-[Cc][Oo][Oo][Kk][Ii][Ee]:[[:space:]]*$2=\([^;]*\).*\$/\1/p" | tail -n 1
}

# location_of <headers file>: the Location of a `curl -D` dump.
location_of() { tr -d '\r' <"$1" | sed -n 's/^[Ll][Oo][Cc][Aa][Tt][Ii][Oo][Nn]:[[:space:]]*//p' | tail -n 1; }

# get_redirect <url> <cookie header value, may be empty> <headers file>: one GET, not followed; fails
# unless it answers 302.
get_redirect() {
  local url=$1 cookie=$2 headers=$3 body="$TMP/redirect.body" code
  local -a cookie_args=()
  [[ -n $cookie ]] && cookie_args=(-H "Cookie: $cookie")
  code=$(curl -sS --max-time 15 -o "$body" -D "$headers" -w '%{http_code}' "${cookie_args[@]}" "$url") \
    || die "GET ${url%%\?*} failed"
  if [[ $code != 302 ]]; then
    cat "$headers" "$body" >&2 || true
    die "GET ${url%%\?*} answered HTTP $code, expected 302"
  fi
}

# The token handler (capability 6) on the running server (the bench account signed in, COOKIE set, the
# hello server up): an API with offline access, a regular_web client whose callback is the handler's, the
# vendor BFF_VENDOR (cookie domain localhost, the base URL's host; apiUpstream the hello server), and one
# sign-in through the handler as a browser holding the bench account's SSO session makes it: GET
# /auth/{vendor}/login → the issuer's /authorize (Latchkey itself, no login page with the session) → the
# handler's callback (code exchanged, ID token verified) → the token cookies. The access token lives the
# API's default 24 h, the cookie a day: nothing is renewed during the run. Sets BFF_AT (the `__Secure-at`
# value) and BFF_RT (`__Host-rt`).
BFF_VENDOR=bench
BFF_SPA=http://localhost:5173
bff_setup() {
  local out="$TMP/bff.json" headers="$TMP/bff.headers" base="http://localhost:$SERVER_PORT" code location tx
  local callback="$base/auth/$BFF_VENDOR/callback" client_id client_secret
  mgmt_post /api/v2/resource-servers '{"name":"Bench BFF","identifier":"https://bench/bff","signing_alg":"ES256","allow_offline_access":true}' "$out"
  mgmt_post /api/v2/clients "{\"name\":\"bench bff\",\"app_type\":\"regular_web\",\"callbacks\":[\"$callback\"]}" "$out"
  client_id=$(json_field client_id "$out")
  client_secret=$(json_field client_secret "$out")
  [[ -n $client_id && -n $client_secret ]] || { cat "$out" >&2; die "the regular_web client came without an id or secret"; }
  code=$(curl -sS --max-time 15 -o "$out" -w '%{http_code}' -u "bench:$MASTER_PASSWORD" -X PUT \
    -H 'Content-Type: application/json' \
    --data "{\"clientId\":\"$client_id\",\"clientSecret\":\"$client_secret\",\"cookieDomain\":\"localhost\",\"allowedReturnTo\":[\"$BFF_SPA\"],\"apiUpstream\":\"${HELLO_URL%/}\",\"audience\":\"https://bench/bff\"}" \
    "$SERVER_URL/management/vendors/$BFF_VENDOR/token-handler") || die "PUT the vendor failed"
  [[ $code == 200 ]] || { cat "$out" >&2; die "PUT /management/vendors/$BFF_VENDOR/token-handler answered HTTP $code, expected 200"; }
  # The server's URLs name its base URL (localhost); curl goes to the address it listens on.
  get_redirect "$SERVER_URL/auth/$BFF_VENDOR/login" "" "$headers"
  tx=$(set_cookie_value "$headers" __Host-lk-tx)
  location=$(location_of "$headers")
  if [[ -z $tx || $location != "$base/authorize?"* ]]; then
    cat "$headers" >&2
    die "the handler's login set no temporary cookie or did not redirect to $base/authorize"
  fi
  get_redirect "$SERVER_URL${location#"$base"}" "$COOKIE" "$headers"
  location=$(location_of "$headers")
  if [[ $location != "$callback?"*code=* ]]; then
    cat "$headers" >&2
    die "/authorize did not send the browser to the handler's callback with a code"
  fi
  get_redirect "$SERVER_URL${location#"$base"}" "__Host-lk-tx=$tx" "$headers"
  BFF_AT=$(set_cookie_value "$headers" __Secure-at)
  BFF_RT=$(set_cookie_value "$headers" __Host-rt)
  if [[ -z $BFF_AT || -z $BFF_RT ]]; then
    cat "$headers" >&2
    die "the handler's callback set no __Secure-at or no __Host-rt cookie"
  fi
  log "signed in through the token handler (vendor $BFF_VENDOR): __Secure-at ${#BFF_AT} characters, __Host-rt ${#BFF_RT}"
}

# Starts nginx as a plain reverse proxy in front of the hello server (NGINX_URL, NGINX_PID): <workers>
# worker processes, kept upstream connections, `Authorization: Bearer` set and `Cookie` dropped as the
# token handler does, no access log.
nginx_reference() {
  local workers=$1 port dir="$TMP/nginx" upstream=${HELLO_URL#http://}
  upstream=${upstream%/}
  port=$(pick_port)
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
worker_processes $workers;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  upstream hello { server $upstream; keepalive 256; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://hello;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Cookie "";
      proxy_set_header Authorization "Bearer ${BFF_AT:0:900}"; # a stand-in of a token's size
    }
  }
}
EOF
  setsid nginx -c "$dir/nginx.conf" -p "$dir" >"$dir/out.log" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  NGINX_URL="http://127.0.0.1:$port"
  wait_http_200 "$NGINX_URL/hello" "$NGINX_PID" "$dir/out.log" 30
}

# Fails unless GET <path> with the Cookie header <cookies> is proxied to the hello server (200, `hello`,
# no Set-Cookie: the access token was used as it is, not renewed).
check_proxied() {
  local path=$1 cookies=$2 headers="$TMP/proxied.headers" body="$TMP/proxied.body" code
  code=$(curl -sS --max-time 10 -o "$body" -D "$headers" -w '%{http_code}' -H "Cookie: $cookies" "$SERVER_URL$path") \
    || die "GET $path failed"
  if [[ $code != 200 || $(cat "$body") != hello ]] || grep -qi '^set-cookie:' "$headers"; then
    cat "$headers" "$body" >&2 || true
    die "GET $path answered HTTP $code; expected hello's 200 passed through, no cookie set"
  fi
}

# Fails unless GET <path> with COOKIE answers 200 with a session (not the signed-out `null`).
check_session() {
  local path=$1 body="$TMP/check.body" code
  code=$(curl -sS --max-time 10 -o "$body" -w '%{http_code}' -H "Cookie: $COOKIE" "$SERVER_URL$path") \
    || die "GET $path failed"
  if [[ $code != 200 ]] || ! grep -q '"session"' "$body"; then
    cat "$body" >&2 || true
    die "GET $path with the sign-up cookies answered HTTP $code without a session"
  fi
}

check_sign_in() {
  local body="$TMP/signin.body" code
  code=$(curl -sS --max-time 15 -o "$body" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data "{\"email\":\"$BENCH_EMAIL\",\"password\":\"$BENCH_PASSWORD\"}" \
    "$SERVER_URL/api/auth/sign-in/email") || die "sign-in request failed"
  if [[ $code != 200 ]]; then
    cat "$body" >&2 || true
    die "sign-in answered HTTP $code, expected 200"
  fi
}

# The number of stored audit records (GET /api/v2/logs with totals, master credentials).
audit_rows() {
  local out="$TMP/audit-rows.json" code
  code=$(curl -sS --max-time 15 -o "$out" -w '%{http_code}' -u "bench:$MASTER_PASSWORD" \
    "$SERVER_URL/api/v2/logs?include_totals=true&per_page=1") || die "GET /api/v2/logs failed"
  [[ $code == 200 ]] || { cat "$out" >&2; die "GET /api/v2/logs answered HTTP $code"; }
  grep -o '"total":[0-9]*' "$out" | head -n 1 | cut -d: -f2
}

# ---------------------------------------------------------------------------------------------------
# 0. tools and binaries

if ! command -v wrk >/dev/null 2>&1; then
  log "wrk is missing: installing it with apt-get"
  SUDO=""
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "wrk is missing and there is no sudo: install wrk"
    SUDO=sudo
  fi
  $SUDO apt-get install -y wrk || { $SUDO apt-get update && $SUDO apt-get install -y wrk; } \
    || die "could not install wrk"
fi
for tool in curl timeout od setsid; do command -v "$tool" >/dev/null 2>&1 || die "$tool is required"; done

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  if [[ ${BENCH_BASELINE_ONLY:-0} != 1 ]]; then
    log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --release
  fi
  log "cargo build --release --example hello --example insert_baseline --example sign_floor"
  cargo build --release --example hello --example insert_baseline --example sign_floor
fi
[[ -x $HELLO_BIN ]] || die "$HELLO_BIN not found (build with: cargo build --release --example hello)"
if [[ ${BENCH_BASELINE_ONLY:-0} != 1 ]]; then
  [[ -x $SERVER_BIN ]] || die "$SERVER_BIN not found (build with: cargo build --release)"
fi

BENCH_START=$SECONDS
log "wrk settings: -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP); sign-in -c$SIGNIN_CONNECTIONS; flood probe -t1 -c$FLOOD_CONNECTIONS"

# ---------------------------------------------------------------------------------------------------
# 1. baseline

HELLO_PORT=$(pick_port)
HELLO_LOG="$TMP/hello.log"
log "starting the hello baseline on 127.0.0.1:$HELLO_PORT"
HELLO_LISTEN="127.0.0.1:$HELLO_PORT" setsid "$HELLO_BIN" >"$HELLO_LOG" 2>&1 &
HELLO_PID=$!
PIDS+=("$HELLO_PID")
wait_http_200 "http://127.0.0.1:$HELLO_PORT/" "$HELLO_PID" "$HELLO_LOG" 30
HELLO_RSS=$(rss_mb "$HELLO_PID" VmRSS)
warm_up hello.lua "http://127.0.0.1:$HELLO_PORT/"
run_wrk "baseline (axum hello)" hello.lua "http://127.0.0.1:$HELLO_PORT/" "$THREADS" "$CONNECTIONS" "$DURATION"
BASELINE_RPS=${RPS["baseline (axum hello)"]}
# The baseline server keeps running (idle) for the adjacent baselines.
HELLO_URL="http://127.0.0.1:$HELLO_PORT/"

# ---------------------------------------------------------------------------------------------------
# 2. Latchkey on SQLite

IDLE_RSS_SQLITE=""
PEAK_RSS_SQLITE=""
IDLE_RSS_PG=""
if [[ ${BENCH_BASELINE_ONLY:-0} != 1 ]]; then
  start_server "sqlite://$TMP/bench.db" sqlite
  sign_up
  check_session /api/auth/get-session
  check_session "/api/auth/get-session?disableCookieCache=true"
  # Idle means idle: the Argon2 workers free their 19 MiB block memory after 2 s without work.
  sleep 3
  IDLE_RSS_SQLITE=$(rss_mb "$SERVER_PID" VmRSS)
  log "idle RSS after start-up, one sign-up and 3 s idle: $IDLE_RSS_SQLITE MB"
  export BENCH_COOKIE=$COOKIE BENCH_EMAIL BENCH_PASSWORD

  cached_url="$SERVER_URL/api/auth/get-session"
  db_url="$SERVER_URL/api/auth/get-session?disableCookieCache=true"
  sign_in_url="$SERVER_URL/api/auth/sign-in/email"

  if wants sessions; then
    warm_up get_session.lua "$cached_url"
    run_wrk "get-session (cookie cache)" get_session.lua "$cached_url" "$THREADS" "$CONNECTIONS" "$DURATION"

    warm_up get_session.lua "$db_url"
    run_wrk "get-session (DB, SQLite)" get_session.lua "$db_url" "$THREADS" "$CONNECTIONS" "$DURATION"

    [[ -n $SESSION_TOKEN ]] || die "the sign-up answer carried no session token"
    export BENCH_HEADER_NAME=Authorization BENCH_HEADER_VALUE="Bearer $SESSION_TOKEN"
    warm_up header.lua "$cached_url"
    run_wrk "get-session (Bearer session token)" header.lua "$cached_url" "$THREADS" "$CONNECTIONS" "$DURATION"

    check_sign_in
    run_wrk "sign-in (SQLite)" sign_in.lua "$sign_in_url" "$THREADS" "$SIGNIN_CONNECTIONS" "$DURATION" --timeout 10s

    # Sign-ins saturate the CPU for DURATION + 2 s; the cached get-session probe runs inside that window.
    flood_dur="$(( $(seconds_of "$DURATION") + 2 ))s"
    flood_out="$TMP/flood-sign-in.txt"
    log "wrk (background): sign-in flood — -t1 -c$SIGNIN_CONNECTIONS -d$flood_dur"
    timeout -k 5 $(( $(seconds_of "$flood_dur") + 30 )) wrk -t1 -c"$SIGNIN_CONNECTIONS" -d"$flood_dur" \
      --latency --timeout 10s -s "$ROOT/bench/sign_in.lua" "$sign_in_url" >"$flood_out" 2>&1 &
    FLOOD_PID=$!
    PIDS+=("$FLOOD_PID")
    sleep 1
    run_wrk "get-session (cookie cache) under sign-in flood" get_session.lua "$cached_url" 1 "$FLOOD_CONNECTIONS" "$DURATION"
    flood_rc=0
    wait "$FLOOD_PID" || flood_rc=$?
    forget_pid "$FLOOD_PID"
    sed 's/^/    /' "$flood_out" >&2
    ((flood_rc == 0)) || die "the background sign-in wrk failed (exit $flood_rc)"
    record "sign-in during the flood above" "$flood_out"
  fi

  if wants keys; then
    # Capability 2 and 3 hot paths: an organization, an API key in it, an extension token.
    post_json /api/auth/organization/create '{"name":"Bench","slug":"bench"}' "$TMP/org.json"
    post_json /api/auth/api-key/create '{"name":"bench"}' "$TMP/key.json"
    API_KEY=$(json_field key "$TMP/key.json")
    [[ $API_KEY == lk_* ]] || die "api-key/create returned no key"
    post_json /api/extensions/token '{"extensionId":"bench","scopes":["read"],"ttlSeconds":900}' "$TMP/ext.json"
    EXT_TOKEN=$(json_field token "$TMP/ext.json")
    [[ -n $EXT_TOKEN ]] || die "extensions/token returned no token"
    check_url="$SERVER_URL/api/auth/check"
    check_header /api/auth/check "x-api-key: $API_KEY"
    check_header /api/auth/check "Authorization: Bearer $EXT_TOKEN"
    check_header /api/auth/check "Cookie: $COOKIE"

    export BENCH_HEADER_NAME=x-api-key BENCH_HEADER_VALUE=$API_KEY
    warm_up header.lua "$check_url"
    run_wrk "check with x-api-key" header.lua "$check_url" "$THREADS" "$CONNECTIONS" "$DURATION"

    export BENCH_API_KEY=$API_KEY
    warm_up verify_key.lua "$SERVER_URL/api/auth/api-key/verify"
    run_wrk "api-key/verify" verify_key.lua "$SERVER_URL/api/auth/api-key/verify" "$THREADS" "$CONNECTIONS" "$DURATION"

    warm_up get_session.lua "$check_url"
    run_wrk "check with session cookie (cookie cache)" get_session.lua "$check_url" "$THREADS" "$CONNECTIONS" "$DURATION"

    export BENCH_HEADER_NAME=Authorization BENCH_HEADER_VALUE="Bearer $EXT_TOKEN"
    warm_up header.lua "$check_url"
    run_wrk "check with Bearer extension token" header.lua "$check_url" "$THREADS" "$CONNECTIONS" "$DURATION"
  fi

  # Capability 4: a service token on /v1/me, and token issuance against a plain insert.
  if wants service; then
    service_setup
    check_header /v1/me "Authorization: Bearer $SERVICE_TOKEN"
    export BENCH_HEADER_NAME=Authorization BENCH_HEADER_VALUE="Bearer $SERVICE_TOKEN"
    warm_up header.lua "$SERVER_URL/v1/me"
    run_wrk "GET /v1/me (service token)" header.lua "$SERVER_URL/v1/me" "$THREADS" "$CONNECTIONS" "$DURATION"
    bench_token SQLite "sqlite://$TMP/insert.db"
  fi

  # Capability 5: the token endpoint's grants, userinfo and the whole code flow.
  if wants oauth; then
    oauth_setup
    cc_url="$SERVER_URL/oauth/token"
    export BENCH_FORM="grant_type=client_credentials&client_id=$MACHINE_ID&client_secret=$MACHINE_SECRET&audience=https%3A%2F%2Fbench%2Fes"
    warm_up form.lua "$cc_url"
    run_wrk "client_credentials, ES256" form.lua "$cc_url" "$THREADS" "$CONNECTIONS" "$DURATION"

    # The RS256 signing floor: a server that only signs such a token per request.
    floor_port=$(pick_port)
    SIGN_LISTEN="127.0.0.1:$floor_port" setsid "$FLOOR_BIN" >"$TMP/floor.log" 2>&1 &
    floor_pid=$!
    PIDS+=("$floor_pid")
    wait_http_200 "http://127.0.0.1:$floor_port/" "$floor_pid" "$TMP/floor.log" 30
    warm_up form.lua "http://127.0.0.1:$floor_port/oauth/token"
    run_wrk "RS256 signing floor" form.lua "http://127.0.0.1:$floor_port/oauth/token" "$THREADS" "$CONNECTIONS" "$DURATION"
    stop_pid "$floor_pid"
    export BENCH_FORM="grant_type=client_credentials&client_id=$MACHINE_ID&client_secret=$MACHINE_SECRET&audience=https%3A%2F%2Fbench%2Frs"
    warm_up form.lua "$cc_url"
    run_wrk "client_credentials, RS256" form.lua "$cc_url" "$THREADS" "$CONNECTIONS" "$DURATION"
    BASE_OF["client_credentials, RS256"]="RS256 signing floor"

    userinfo_token=$(code_flow_tokens "openid profile email" | grep -o '"access_token":"[^"]*"' | cut -d'"' -f4)
    [[ -n $userinfo_token ]] || die "no access token for /userinfo"
    check_header /userinfo "Authorization: Bearer $userinfo_token"
    export BENCH_HEADER_NAME=Authorization BENCH_HEADER_VALUE="Bearer $userinfo_token"
    warm_up header.lua "$SERVER_URL/userinfo"
    run_wrk "GET /userinfo" header.lua "$SERVER_URL/userinfo" "$THREADS" "$CONNECTIONS" "$DURATION"

    bench_refresh SQLite-oauth "sqlite://$TMP/insert-oauth.db"

    export BENCH_AUTHORIZE
    BENCH_AUTHORIZE=$(authorize_path "openid profile email")
    export BENCH_CLIENT_ID=$SPA_ID BENCH_REDIRECT_URI=$SPA_REDIRECT BENCH_VERIFIER=$PKCE_VERIFIER
    run_wrk "code flow: authorize + token (2 requests per flow)" code_flow.lua "$SERVER_URL/" "$THREADS" "$CONNECTIONS" "$DURATION"
    ROW_FLOWS="code flow: authorize + token (2 requests per flow)"
  fi

  # Capability 6: the token handler's API proxy (cookie opened, request forwarded to the hello server on a
  # kept connection pool) and its gateway check. The adjacent baseline of the proxy row is that same hello
  # server driven directly with the same request: the ratio is "through the handler" to "straight to the
  # upstream".
  if wants bff; then
    bff_setup
    proxy_url="$SERVER_URL/auth/$BFF_VENDOR/api/hello"
    bff_check_url="$SERVER_URL/auth/$BFF_VENDOR/check"
    # A browser on the handler's host sends both token cookies; a gateway on the API's host gets only the
    # access-token one (the refresh cookie is host-only).
    check_proxied "/auth/$BFF_VENDOR/api/hello" "__Secure-at=$BFF_AT; __Host-rt=$BFF_RT"
    check_header "/auth/$BFF_VENDOR/check" "Cookie: __Secure-at=$BFF_AT"

    export BENCH_HEADER_NAME=Cookie BENCH_HEADER_VALUE="__Secure-at=$BFF_AT; __Host-rt=$BFF_RT"
    warm_up header.lua "$proxy_url"
    run_wrk "token handler proxy: GET /auth/{v}/api/hello → hello" header.lua "$proxy_url" "$THREADS" "$CONNECTIONS" "$DURATION"

    # The field's reference proxy in the same minutes, when nginx is installed: `proxy_pass` to the same
    # upstream with kept connections, a Bearer header set and the cookies dropped, one worker per CPU —
    # what forwarding alone costs on this machine, with no cookie to open and no middleware.
    if command -v nginx >/dev/null 2>&1; then
      nginx_reference "$THREADS"
      warm_up header.lua "$NGINX_URL/hello"
      run_wrk "reference: nginx proxy_pass → hello (forwarding only)" header.lua "$NGINX_URL/hello" "$THREADS" "$CONNECTIONS" "$DURATION"
      stop_pid "$NGINX_PID"
    else
      log "nginx not installed: no reference proxy row (apt-get install -y nginx)"
    fi

    # The same through an upstream that spends 200 µs of CPU per request (hello's `/work`), as an API
    # doing something would: the handler's added cost against an upstream's own.
    work_url="$SERVER_URL/auth/$BFF_VENDOR/api/work"
    warm_up header.lua "$work_url"
    run_wrk "token handler proxy: GET /auth/{v}/api/work → hello spending 200 µs" header.lua "$work_url" "$THREADS" "$CONNECTIONS" "$DURATION"

    export BENCH_HEADER_VALUE="__Secure-at=$BFF_AT"
    warm_up header.lua "$bff_check_url"
    run_wrk "token handler check: GET /auth/{v}/check" header.lua "$bff_check_url" "$THREADS" "$CONNECTIONS" "$DURATION"
  fi

  PEAK_RSS_SQLITE=$(rss_mb "$SERVER_PID" VmHWM)
  stop_server

  if wants audit; then
    # The stored audit log's cost: the same sign-in and cached get-session on a server with the log on
    # (the default) and on one with LATCHKEY_AUDIT_ENABLED=false, each on a fresh database; and the
    # get-session flood must add no audit row (the writer is given a second to catch up).
    # Sign-in is Argon2-bound (~100/s on 2 cores) and a 10 s run moves by several percent on a shared
    # machine, so the sign-in pair runs $BENCH_ROUNDS times, on and off back to back on fresh servers,
    # and the note reports each round's ratio and their median.
    declare -A AUDIT_SIGN_IN=()
    AUDIT_RATIOS=()
    for ((round = 1; round <= ROUNDS; round++)); do
      for mode in on off; do
        enabled=true
        [[ $mode == off ]] && enabled=false
        EXTRA_SERVER_ENV=("LATCHKEY_AUDIT_ENABLED=$enabled")
        start_server "sqlite://$TMP/audit-$mode-$round.db" "sqlite-audit-$mode-$round"
        sign_up
        if ((round == 1)); then
          export BENCH_COOKIE=$COOKIE
          audit_cached="$SERVER_URL/api/auth/get-session"
          sleep 1
          before=$(audit_rows)
          warm_up get_session.lua "$audit_cached"
          run_wrk "get-session (cookie cache), audit log $mode" get_session.lua "$audit_cached" "$THREADS" "$CONNECTIONS" "$DURATION"
          sleep 1
          after=$(audit_rows)
          if [[ $mode == on ]]; then
            [[ $before -gt 0 && $after == "$before" ]] \
              || die "the get-session flood changed the audit log: $before rows before, $after after (expected no change, and the sign-up's rows)"
            NOTES+=("- audit log on: $before rows after the sign-up, $after after the cached get-session flood (${RPS["get-session (cookie cache), audit log on"]} req/s for $DURATION): no row written by a session check")
          fi
        fi
        check_sign_in
        row="sign-in (SQLite), audit log $mode, round $round"
        run_wrk "$row" sign_in.lua "$SERVER_URL/api/auth/sign-in/email" "$THREADS" "$SIGNIN_CONNECTIONS" "$DURATION" --timeout 10s
        AUDIT_SIGN_IN[$mode]=${RPS["$row"]}
        if [[ $mode == on && $round == 1 ]]; then
          sleep 1
          NOTES+=("- audit log on: $(audit_rows) rows after the sign-in run (two per sign-in: \`s\` and \`session_created\`)")
        fi
        stop_server
        EXTRA_SERVER_ENV=()
      done
      AUDIT_RATIOS+=("$(awk -v a="${AUDIT_SIGN_IN[on]}" -v b="${AUDIT_SIGN_IN[off]}" 'BEGIN { printf "%.3f", a / b }')")
    done
    audit_median=$(printf '%s\n' "${AUDIT_RATIOS[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    NOTES+=("- sign-in with the audit log on / off, per round: ${AUDIT_RATIOS[*]}; median **$audit_median** (target ≥ 0.95)")
  fi

  # -------------------------------------------------------------------------------------------------
  # 3. Latchkey on PostgreSQL

  pg_row="get-session (DB, PostgreSQL)"
  if [[ ${BENCH_SKIP_POSTGRES:-0} == 1 ]] || ! wants postgres; then
    skip_row "$pg_row" "skipped (BENCH_SKIP_POSTGRES=1 or BENCH_ONLY)"
  elif ! command -v psql >/dev/null 2>&1; then
    log "notice: psql not found; skipping the PostgreSQL scenario"
    skip_row "$pg_row" "skipped (no psql)"
  elif ! pg -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
    log "notice: PostgreSQL at $PG_HOST:$PG_PORT (user $PG_USER) is unreachable; skipping the PostgreSQL scenario"
    skip_row "$pg_row" "skipped (PostgreSQL unreachable)"
  else
    PG_DB="latchkey_bench_$(random_hex 6)"
    log "creating database $PG_DB"
    pg -d postgres -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
    start_server "postgres://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB" postgres
    sign_up
    check_session "/api/auth/get-session?disableCookieCache=true"
    sleep 3
    IDLE_RSS_PG=$(rss_mb "$SERVER_PID" VmRSS)
    export BENCH_COOKIE=$COOKIE
    db_url="$SERVER_URL/api/auth/get-session?disableCookieCache=true"
    warm_up get_session.lua "$db_url"
    run_wrk "$pg_row" get_session.lua "$db_url" "$THREADS" "$CONNECTIONS" "$DURATION"
    service_setup
    bench_token PostgreSQL "postgres://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB"
    if wants oauth; then
      oauth_setup
      bench_refresh PostgreSQL-oauth "postgres://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB"
    fi
    stop_server
    drop_pg_db
  fi
fi

# ---------------------------------------------------------------------------------------------------
# 4. report

fmt() { awk -v v="$1" -v p="$2" 'BEGIN { printf("%." p "f", v) }'; }

table() {
  echo "| scenario | req/s | p50 ms | p99 ms | baseline req/s used | req/s ratio to baseline |"
  echo "|---|---:|---:|---:|---:|---:|"
  local name ratio label es eo base
  for name in "${ROW_NAMES[@]}"; do
    if [[ -n ${ROW_NOTE[$name]:-} ]]; then
      echo "| $name | ${ROW_NOTE[$name]} | | | | |"
      continue
    fi
    base=${ADJ[$name]:-$BASELINE_RPS}
    [[ -n ${BASE_OF[$name]:-} ]] && base=${RPS[${BASE_OF[$name]}]}
    ratio=$(awk -v a="${RPS[$name]}" -v b="$base" 'BEGIN { if (b > 0) printf "%.3f", a / b; else printf "n/a" }')
    label=$name es=${ERR_STATUS[$name]} eo=${ERR_SOCKET[$name]}
    if ((es > 0 || eo > 0)); then
      label="$name **(ERRORS: $es HTTP ≥ 400, $eo socket — not valid)**"
    fi
    [[ -n ${ROUNDS_NOTE[$name]:-} && -z ${BASE_OF[$name]:-} ]] && ratio="$ratio (${ROUNDS_NOTE[$name]% })"
    echo "| $label | $(fmt "${RPS[$name]}" 0) | $(fmt "${P50[$name]}" 2) | $(fmt "${P99[$name]}" 2) | $(fmt "$base" 0) | $ratio |"
  done
}

memory() {
  echo "- hello baseline RSS, idle: ${HELLO_RSS:-?} MB"
  if [[ -n $IDLE_RSS_SQLITE ]]; then
    echo "- Latchkey idle RSS (SQLite, after start-up, one sign-up and 3 s idle, before load): **$IDLE_RSS_SQLITE MB**;" \
      "peak RSS after the SQLite scenarios: $PEAK_RSS_SQLITE MB"
  fi
  [[ -n $IDLE_RSS_PG ]] && echo "- Latchkey idle RSS (PostgreSQL, after start-up, one sign-up and 3 s idle): $IDLE_RSS_PG MB"
  return 0
}

TABLE=$(table)
MEMORY=$(memory)
if ((${#NOTES[@]})); then
  MEMORY+=$'\n'$(printf '%s\n' "${NOTES[@]}")
fi
ELAPSED=$((SECONDS - BENCH_START))
printf '\n%s\n\n%s\n' "$TABLE" "$MEMORY"
if [[ ${BENCH_BASELINE_ONLY:-0} != 1 ]]; then
  echo "- rate limits raised to 1000000000 for this run: sign-in per IP, sign-in failures per email, sign-up per IP"
fi
echo

mkdir -p "$(dirname "$RESULTS")"
{
  echo "# Latchkey benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)), $(uname -sr)"
  if commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock migrations 2>/dev/null \
      || commit="$commit (with uncommitted changes)"
    echo "- commit: $commit"
  fi
  echo "- wrk $(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }'): -t$THREADS -c$CONNECTIONS -d$DURATION --latency" \
    "(warm-up $WARMUP before each GET scenario); sign-in -t$THREADS -c$SIGNIN_CONNECTIONS;" \
    "flood: sign-in -t1 -c$SIGNIN_CONNECTIONS in the background, get-session -t1 -c$FLOOD_CONNECTIONS"
  echo "- wrk and the server share the machine over 127.0.0.1; p50/p99 from wrk's latency distribution"
  if [[ $ADJACENT == 1 ]]; then
    echo "- each throughput scenario's ratio is against the hello baseline re-measured (${ADJACENT_DURATION}) right before it" \
      "with the scenario's own request (same wrk script: headers, method, body; hello answers any path)" \
      "(column 'baseline req/s used'); sign-in and flood rows use the first baseline (plain GET /)"
  fi
  if [[ ${BENCH_BASELINE_ONLY:-0} != 1 ]]; then
    echo "- rate limits raised for the run: LATCHKEY_RATE_LIMIT_SIGN_IN_PER_IP, _SIGN_IN_FAILURES_PER_EMAIL," \
      "_SIGN_UP_PER_IP and _VERIFY_PER_IP = 1000000000; server log filter: ${BENCH_SERVER_LOG:-server default}"
  else
    echo "- BENCH_BASELINE_ONLY=1: the Latchkey scenarios were not run"
  fi
  echo
  echo "$TABLE"
  echo
  echo "$MEMORY"
} >"$RESULTS"
log "report written to $RESULTS (measured part took ${ELAPSED} s)"

if ((FLAGGED > 0)); then
  die "$FLAGGED scenario(s) saw errors; their numbers are not valid (see the table)"
fi
