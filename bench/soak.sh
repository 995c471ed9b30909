#!/usr/bin/env bash
# Latchkey soak (issue 15, item 6): minutes of mixed load against one server, over 127.0.0.1 only, with
# its memory and per-interval p99 recorded and plotted. Usage:
#
#   bash bench/soak.sh                       # 10 minutes on PostgreSQL
#   SOAK_DURATION=1m bash bench/soak.sh      # a trial
#
# One server (PostgreSQL on a throw-away database by default; SOAK_BACKEND=sqlite for a file in a temp
# dir), one signed-up user with an API key and a service token, and five wrk processes in parallel for
# the whole window, each in back-to-back slices of SOAK_SLICE (so each slice gives a p99 of its own):
#
#   session   cached get-session (cookie cache)                        -t1 -c4
#   key       GET /api/auth/check with x-api-key (key cache)           -t1 -c4
#   token     GET /v1/me with a service token (verified-token cache)   -t1 -c4
#   signin    sign-in → list-sessions → sign-out → list-sessions (401)  -t2 -c2, Argon2id-bound
#   keyflow   api-key/create → check → api-key/delete → check (401)    -t1 -c1
#
# bench/soak.lua judges every answer: the flows' last step must be the revoked credential's 401 (the
# expected 4xx); any other status is an error. The server's RSS (/proc/<pid>/status) is sampled every
# SOAK_RSS_EVERY seconds before, during and for SOAK_SETTLE after the load. Results:
#   bench/results/soak.md    summary: per kind requests, req/s, p99 first / last minute / worst slice,
#                            expected 4xx, errors; RSS idle / peak / end of load / after settling;
#                            warnings and errors in the server log
#   bench/results/soak.png   RSS and per-slice p99 over time (gnuplot)
#   bench/results/soak.tsv   the raw slices; soak-rss.tsv the raw RSS samples
#
# Environment (all optional):
#   SOAK_DURATION=10m  SOAK_SLICE=10s  SOAK_SETTLE=90s  SOAK_RSS_EVERY=2  SOAK_BACKEND=postgres|sqlite
#   SOAK_MAINTENANCE=60   the server's maintenance interval in seconds (its caches are pruned then; the
#                         default of 600 would leave the last window's entries in memory past the settle)
#   BENCH_PG_HOST=127.0.0.1 BENCH_PG_PORT=5432 BENCH_PG_USER=postgres   BENCH_PORT_BASE=18080
#   BENCH_SKIP_BUILD=1    use $CARGO_TARGET_DIR/release/latchkey as it is (default /tmp/latchkey-target)
#   SOAK_RESULTS_DIR=<dir>  default bench/results
#
# Exit status 0 when no request got an unexpected answer or a socket error; 1 otherwise (the report is
# still written).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/latchkey-target}
DURATION=${SOAK_DURATION:-10m}
SLICE=${SOAK_SLICE:-10s}
SETTLE=${SOAK_SETTLE:-90s}
RSS_EVERY=${SOAK_RSS_EVERY:-2}
BACKEND=${SOAK_BACKEND:-postgres}
MAINTENANCE=${SOAK_MAINTENANCE:-60}
RESULTS_DIR=${SOAK_RESULTS_DIR:-$ROOT/bench/results}
SERVER_BIN=$CARGO_TARGET_DIR/release/latchkey
MASTER_PASSWORD=$(random_hex 16)
PASSWORD="soak password $(random_hex 4)"
KINDS=(session key token signin keyflow)
declare -A THREADS_OF=([session]=1 [key]=1 [token]=1 [signin]=2 [keyflow]=1)
declare -A CONNS_OF=([session]=4 [key]=4 [token]=4 [signin]=2 [keyflow]=1)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-soak.XXXXXX")
PG_DB=""
cleanup() {
  local rc=$?
  set +e
  bench_cleanup_pids
  if [[ -n $PG_DB ]]; then
    pg -d postgres -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 \
      || printf 'bench: warning: could not drop database %s\n' "$PG_DB" >&2
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_tools wrk curl gnuplot
[[ $BACKEND == postgres || $BACKEND == sqlite ]] || die "SOAK_BACKEND must be postgres or sqlite"
[[ $BACKEND == sqlite ]] || ensure_tools psql
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release
fi
[[ -x $SERVER_BIN ]] || die "$SERVER_BIN not found (build with: cargo build --release)"

# ---------------------------------------------------------------------------------------------------
# the server and its fixtures

if [[ $BACKEND == postgres ]]; then
  pg -d postgres -tAc 'SELECT 1' >/dev/null || die "PostgreSQL at $PG_HOST:$PG_PORT (user $PG_USER) is unreachable"
  PG_DB="latchkey_soak_$(random_hex 6)"
  pg -d postgres -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
  DB_URL=$(pg_url "$PG_DB")
else
  DB_URL="sqlite://$TMP/soak.db"
fi

PORT=$(pick_port)
SERVER_URL="http://127.0.0.1:$PORT"
SERVER_LOG="$TMP/server.log"
log "starting latchkey ($BACKEND) on $SERVER_URL"
(cd "$TMP" && exec setsid env -i "PATH=$PATH" "HOME=${HOME:-/tmp}" \
  "LATCHKEY_LISTEN=127.0.0.1:$PORT" "LATCHKEY_DATABASE_URL=$DB_URL" "LATCHKEY_BASE_URL=http://localhost:$PORT" \
  "LATCHKEY_SECRET=$(random_hex 32)" "MASTER_USERNAME=bench" "MASTER_PASSWORD=$MASTER_PASSWORD" \
  LATCHKEY_RATE_LIMIT_SIGN_IN_PER_IP=1000000000 LATCHKEY_RATE_LIMIT_SIGN_IN_FAILURES_PER_EMAIL=1000000000 \
  LATCHKEY_RATE_LIMIT_SIGN_UP_PER_IP=1000000000 LATCHKEY_RATE_LIMIT_VERIFY_PER_IP=1000000000 \
  "LATCHKEY_MAINTENANCE_INTERVAL=$MAINTENANCE" LATCHKEY_LOG_FORMAT=json \
  "$SERVER_BIN" serve) >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_http_200 "$SERVER_URL/healthz" "$SERVER_PID" "$SERVER_LOG" 120

# call <expected status> <output file> <curl args...>
call() {
  local want=$1 out=$2 code
  shift 2
  code=$(curl -sS --max-time 30 -o "$out" -w '%{http_code}' "$@") || die "request failed: ${*: -1}"
  [[ $code == "$want" ]] || { cat "$out" >&2; die "${*: -1} answered HTTP $code, expected $want"; }
}
json_field() { grep -o "\"$1\":\"[^\"]*\"" "$2" | head -n 1 | cut -d'"' -f4; }

# The bench user: cookies for the session kind, its token (Bearer) for the key flow, an API key.
headers="$TMP/signup.headers"
call 200 "$TMP/signup.json" -D "$headers" -H 'Content-Type: application/json' \
  --data "{\"name\":\"Soak\",\"email\":\"soak@example.com\",\"password\":\"$PASSWORD\"}" "$SERVER_URL/api/auth/sign-up/email"
pairs=$(tr -d '\r' <"$headers" | sed -n 's/^[Ss]et-[Cc]ookie:[[:space:]]*\([^;]*\).*$/\1/p')
COOKIE="$(grep -E '^[^=]*session_token=.' <<<"$pairs" | tail -n 1); $(grep -E '^[^=]*session_data=.' <<<"$pairs" | tail -n 1)"
SESSION_TOKEN=$(json_field token "$TMP/signup.json")
[[ -n $SESSION_TOKEN && $COOKIE == *session_token=*session_data=* ]] || die "the sign-up gave no session token or cookies"
# The sign-in flow's own user, so that its sign-outs never touch the bench user's session.
call 200 "$TMP/flow.json" -H 'Content-Type: application/json' \
  --data "{\"name\":\"Flow\",\"email\":\"flow@example.com\",\"password\":\"$PASSWORD\"}" "$SERVER_URL/api/auth/sign-up/email"
call 200 "$TMP/key.json" -H 'Content-Type: application/json' -H "Authorization: Bearer $SESSION_TOKEN" \
  --data '{"name":"soak"}' "$SERVER_URL/api/auth/api-key/create"
API_KEY=$(json_field key "$TMP/key.json")
[[ $API_KEY == lk_* ]] || die "api-key/create returned no key"
# A service client, a user of it and a service token (30 days).
call 201 "$TMP/client.json" -u "bench:$MASTER_PASSWORD" -H 'Content-Type: application/json' \
  --data '{"name":"soak"}' "$SERVER_URL/v1/clients"
CLIENT_KEY=$(json_field apiKey "$TMP/client.json")
call 201 "$TMP/suser.json" -H "x-api-key: $CLIENT_KEY" -H 'Content-Type: application/json' \
  --data '{"name":"soak user"}' "$SERVER_URL/v1/users"
call 200 "$TMP/token.json" -H "x-api-key: $CLIENT_KEY" -H 'Content-Type: application/json' \
  --data "{\"userId\":\"$(json_field userId "$TMP/suser.json")\",\"secret\":\"$(json_field secret "$TMP/suser.json")\"}" \
  "$SERVER_URL/v1/token"
SERVICE_TOKEN=$(json_field accessToken "$TMP/token.json")
[[ -n $SERVICE_TOKEN ]] || die "POST /v1/token returned no token"
# Each kind once by hand (a wrong fixture would otherwise be soaked as errors).
call 200 "$TMP/check.json" -H "Cookie: $COOKIE" "$SERVER_URL/api/auth/get-session"
grep -q '"session"' "$TMP/check.json" || die "get-session with the sign-up cookies answered no session"
call 200 "$TMP/check.json" -H "x-api-key: $API_KEY" "$SERVER_URL/api/auth/check"
call 200 "$TMP/check.json" -H "Authorization: Bearer $SERVICE_TOKEN" "$SERVER_URL/v1/me"

export BENCH_COOKIE=$COOKIE BENCH_API_KEY=$API_KEY BENCH_SERVICE_TOKEN=$SERVICE_TOKEN \
  BENCH_EMAIL=flow@example.com BENCH_PASSWORD=$PASSWORD BENCH_SESSION_TOKEN=$SESSION_TOKEN

# ---------------------------------------------------------------------------------------------------
# the soak

RSS_FILE="$TMP/rss.tsv"
SLICES="$TMP/slices.tsv"
: >"$SLICES"
T0=$(date +%s.%N)

# RSS sampler: "<seconds since T0> <RSS MB>" until the server stops.
(
  while alive "$SERVER_PID"; do
    rss=$(awk '$1 == "VmRSS:" { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null) || break
    [[ -n $rss ]] && echo "$(awk -v t0="$T0" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - t0 }') $rss"
    sleep "$RSS_EVERY"
  done
) >"$RSS_FILE" &
PIDS+=("$!")

sleep 5
IDLE_RSS=$(rss_mb "$SERVER_PID" VmRSS)
log "idle RSS after set-up: $IDLE_RSS MB; soaking for $DURATION in $SLICE slices"

# worker <kind>: wrk slices back to back until the window ends; one line per slice:
# "<end, seconds since T0> <kind> <rps> <p50> <p99> <requests> <expected 4xx> <unexpected> <socket errors>"
worker() {
  local kind=$1 end_at=$2 out="$TMP/wrk-$1.txt" slice=$(seconds_of "$SLICE") line now left
  while true; do
    now=$(date +%s)
    left=$((end_at - now))
    ((left >= 1)) || break
    ((left < slice)) && slice=$left
    BENCH_SOAK_KIND=$kind timeout -k 5 $((slice + 30)) wrk -t"${THREADS_OF[$kind]}" -c"${CONNS_OF[$kind]}" \
      -d"${slice}s" --latency --timeout 10s -s "$ROOT/bench/soak.lua" "$SERVER_URL" >"$out" 2>&1 || true
    line=$(grep '^LATCHKEY_SOAK ' "$out" | tail -n 1 || true)
    if [[ -z $line ]]; then
      echo "wrk gave no result for $kind:" >&2
      cat "$out" >&2
      line="LATCHKEY_SOAK rps=0 p50_ms=0 p99_ms=0 requests=0 expected_4xx=0 unexpected=0 socket_errors=1"
    fi
    local f
    f=${line#LATCHKEY_SOAK }
    echo "$(awk -v t0="$T0" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - t0 }') $kind $(tr ' ' '\n' <<<"$f" | cut -d= -f2 | tr '\n' ' ')" >>"$SLICES"
  done
}

LOAD_START=$(awk -v t0="$T0" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - t0 }')
END_AT=$(($(date +%s) + $(seconds_of "$DURATION")))
WORKERS=()
for kind in "${KINDS[@]}"; do
  worker "$kind" "$END_AT" &
  WORKERS+=("$!")
  PIDS+=("$!")
done
while (($(date +%s) < END_AT)); do
  sleep 30
  alive "$SERVER_PID" || die "the server exited during the soak (log: $(tail -n 5 "$SERVER_LOG"))"
  log "$(( $(date +%s) - END_AT + $(seconds_of "$DURATION") )) s: RSS $(rss_mb "$SERVER_PID" VmRSS) MB; $(wc -l <"$SLICES") slices so far"
done
for pid in "${WORKERS[@]}"; do
  wait "$pid" || true
  forget_pid "$pid"
done
LOAD_END=$(awk -v t0="$T0" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - t0 }')
END_RSS=$(rss_mb "$SERVER_PID" VmRSS)
log "load over: RSS $END_RSS MB; settling for $SETTLE"
sleep "$(seconds_of "$SETTLE")"
SETTLED_RSS=$(rss_mb "$SERVER_PID" VmRSS)
PEAK_RSS=$(rss_mb "$SERVER_PID" VmHWM)
# Audit records of refused credentials are logged at WARN too (target "audit"): counted apart, they
# should match the flows' expected 401s.
AUDIT_WARNINGS=$(grep '"level":"WARN"' "$SERVER_LOG" | grep -c '"target":"audit"' || true)
WARNINGS=$(grep '"level":"WARN"' "$SERVER_LOG" | grep -vc '"target":"audit"' || true)
ERRORS=$(grep -c '"level":"ERROR"' "$SERVER_LOG" || true)
grep -E '"level":"(WARN|ERROR)"' "$SERVER_LOG" | grep -v '"target":"audit"' | head -n 5 >"$TMP/log-problems.txt" || true
stop_pid "$SERVER_PID"

# ---------------------------------------------------------------------------------------------------
# report

mkdir -p "$RESULTS_DIR"
cp "$SLICES" "$RESULTS_DIR/soak.tsv"
cp "$RSS_FILE" "$RESULTS_DIR/soak-rss.tsv"

# Per-kind gnuplot data: "<minute> <p99>".
for kind in "${KINDS[@]}"; do
  awk -v k="$kind" '$2 == k { printf "%.3f %s\n", $1 / 60, $5 }' "$SLICES" >"$TMP/p99-$kind.dat"
done
awk '{ printf "%.3f %s\n", $1 / 60, $2 }' "$RSS_FILE" >"$TMP/rss.dat"
gnuplot <<EOF
set terminal pngcairo size 1100,800 font ",10" noenhanced
set output "$RESULTS_DIR/soak.png"
set multiplot layout 2,1 title "Latchkey soak ($BACKEND, $DURATION of mixed load, $(date -u '+%Y-%m-%d'))"
set grid
set xlabel "minutes"
set xrange [0:$(awk '{ if ($1 > m) m = $1 } END { printf "%.2f", m / 60 }' "$RSS_FILE")]
set arrow 1 from $(awk -v s="$LOAD_END" 'BEGIN { print s / 60 }'), graph 0 to $(awk -v s="$LOAD_END" 'BEGIN { print s / 60 }'), graph 1 nohead dt 2
set ylabel "RSS (MB)"
set yrange [0:*]
plot "$TMP/rss.dat" using 1:2 with lines lw 2 title "server RSS (load from $(awk -v s="$LOAD_START" 'BEGIN { printf "%.1f", s / 60 }') to $(awk -v s="$LOAD_END" 'BEGIN { printf "%.1f", s / 60 }') min)"
set ylabel "p99 per $SLICE slice (ms)"
set logscale y
set yrange [*:*]
plot $(for kind in "${KINDS[@]}"; do printf '"%s" using 1:2 with linespoints pt 7 ps 0.5 title "%s", ' "$TMP/p99-$kind.dat" "$kind"; done | sed 's/, $//')
unset multiplot
EOF

# kind_stats <kind>: requests, req/s, p99 median, p99 first minute (median), last minute (median), worst,
# expected 4xx, unexpected, socket errors.
kind_stats() {
  awk -v k="$1" -v start="$LOAD_START" -v end="$LOAD_END" '
    function median(a, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n ? (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) : 0
    }
    $2 == k {
      n++; p[n] = $5; req += $6; exp4 += $7; bad += $8; sock += $9; secs += ($6 / ($3 > 0 ? $3 : 1))
      if ($5 > worst) worst = $5
      if ($1 - start <= 70) { nf++; first[nf] = $5 }
      if (end - $1 <= 60) { nl++; last[nl] = $5 }
    }
    END {
      printf "%d %.0f %.2f %.2f %.2f %.2f %d %d %d\n", req, (secs > 0 ? req / secs : 0), median(p, n), median(first, nf), median(last, nl), worst, exp4, bad, sock
    }' "$SLICES"
}

TOTAL_BAD=0
TABLE="| kind | requests | req/s | p99 ms, median slice | p99 first minute | p99 last minute | worst slice p99 | expected 4xx | unexpected | socket errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for kind in "${KINDS[@]}"; do
  read -r req rps p99 first last worst exp4 bad sock <<<"$(kind_stats "$kind")"
  TOTAL_BAD=$((TOTAL_BAD + bad + sock))
  TABLE+=$'\n'"| $kind | $req | $rps | $p99 | $first | $last | $worst | $exp4 | $bad | $sock |"
done
MAX_LOAD_RSS=$(awk -v s="$LOAD_START" -v e="$LOAD_END" '$1 >= s && $1 <= e && $2 > m { m = $2 } END { print m + 0 }' "$RSS_FILE")
# RSS over the load's second half against its first: a leak grows, a bounded cache levels off.
RSS_HALVES=$(awk -v s="$LOAD_START" -v e="$LOAD_END" '
  $1 >= s && $1 <= e { if ($1 < (s + e) / 2) { a += $2; na++ } else { b += $2; nb++ } }
  END { printf "%.1f MB in the first half, %.1f MB in the second", (na ? a / na : 0), (nb ? b / nb : 0) }' "$RSS_FILE")

{
  echo "# Latchkey soak"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) CPUs, shared with other work (absolute latencies are noisy; the trend is the point)"
  if commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock migrations 2>/dev/null || commit="$commit (with uncommitted changes)"
    echo "- commit: $commit; backend: $BACKEND; maintenance interval ${MAINTENANCE} s; rate limits raised to 10^9"
  fi
  echo "- $DURATION of load: five wrk processes in parallel, back-to-back $SLICE slices (one p99 per slice); RSS sampled every ${RSS_EVERY} s; $SETTLE of settling after"
  echo
  echo "$TABLE"
  echo
  echo "- RSS: idle after set-up **$IDLE_RSS MB**; highest sample under load $MAX_LOAD_RSS MB (mean $RSS_HALVES); at the end of the load $END_RSS MB; **after $SETTLE idle $SETTLED_RSS MB**; VmHWM $PEAK_RSS MB"
  echo "- server log: $WARNINGS warnings, $ERRORS errors (besides $AUDIT_WARNINGS audit records of refused credentials at WARN)"
  if [[ -s $TMP/log-problems.txt ]]; then
    echo '```'
    cut -c1-300 "$TMP/log-problems.txt"
    echo '```'
  fi
  echo
  echo "![RSS and p99 over the soak](soak.png)"
} >"$RESULTS_DIR/soak.md"
printf '\n%s\n\n' "$TABLE"
log "RSS idle $IDLE_RSS MB, peak under load $MAX_LOAD_RSS MB, end of load $END_RSS MB, after settling $SETTLED_RSS MB"
log "report: $RESULTS_DIR/soak.md, plot: $RESULTS_DIR/soak.png"
((TOTAL_BAD == 0)) || die "$TOTAL_BAD unexpected answers or socket errors (see the report)"
