#!/usr/bin/env bash
# Instructions per request, counted by callgrind: the noise-free complement of bench/run.sh.
#
#   bash bench/instructions.sh
#
# run.sh measures req/s against a hello-world in the same run, but on this shared 2-core machine two runs
# of the same scenario can differ by 0.15. valgrind's callgrind counts the instructions a server executes
# in user space whatever else the machine is doing, so a change to a hot path shows as a repeatable
# number. It does not count kernel work (the loopback TCP that is most of the hello baseline's cost), so
# these ratios are larger than run.sh's throughput ratios: the issues' targets are judged on run.sh, and
# whether a change helps is judged here. valgrind also hides CPU extensions such as SHA-NI, so SHA-256
# shows at its portable cost.
#
# Both servers (examples/hello.rs and Latchkey on a temporary SQLite database) run under
# `valgrind --tool=callgrind --instr-atstart=no`. For each scenario the script warms both up with
# instrumentation off, then for each server: instrumentation on, wrk (1 thread, BENCH_CG_CONNECTIONS
# connections) for BENCH_CG_DURATION, instrumentation off, dump; instructions of the dump / requests wrk
# completed. hello gets exactly the scenario's request (it answers any path and method).
#
#   scenario                           request
#   get-session (cookie cache)         GET /api/auth/get-session with both session cookies
#   check with x-api-key               GET /api/auth/check, x-api-key
#   api-key/verify                     POST /api/auth/api-key/verify {key}
#   check with session cookie          GET /api/auth/check with both session cookies
#   check with Bearer extension token  GET /api/auth/check, Authorization: Bearer <extension token>
#
# Environment (all optional): BENCH_CG_DURATION=5s, BENCH_CG_CONNECTIONS=4, BENCH_PORT_BASE=18300,
# BENCH_CG_ONLY=<text> (only the scenarios whose name contains it), BENCH_CG_KEEP=<dir> (keep each
# scenario's callgrind dumps there, for `callgrind_annotate --inclusive=yes <file>`),
# BENCH_SKIP_BUILD=1 (use the binaries in $CARGO_TARGET_DIR/release), CARGO_TARGET_DIR (default
# /tmp/latchkey-target), BENCH_RESULTS=<file> (default bench/results/instructions.md).
# Needs valgrind (callgrind_control), wrk, curl and python3. Takes about 3 minutes after the build.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/latchkey-target}
DURATION=${BENCH_CG_DURATION:-5s}
CONNECTIONS=${BENCH_CG_CONNECTIONS:-4}
PORT_BASE=${BENCH_PORT_BASE:-18300}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results/instructions.md}
SERVER_BIN=$CARGO_TARGET_DIR/release/latchkey
HELLO_BIN=$CARGO_TARGET_DIR/release/examples/hello

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'instructions: error: %s\n' "$*" >&2; exit 1; }

for tool in valgrind callgrind_control wrk curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y valgrind wrk curl python3)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-cg.XXXXXX")
PIDS=()
cleanup() {
  local rc=$? pid
  set +e
  for pid in "${PIDS[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pick_port() {
  local p
  for ((p = $1; p < PORT_BASE + 20; p++)); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port in $PORT_BASE-$((PORT_BASE + 19)) (set BENCH_PORT_BASE)"
}

# Waits for $url to answer 200 while process $pid lives (valgrind start-up takes a few seconds).
wait_up() {
  local url=$1 pid=$2 logfile=$3 start=$SECONDS
  until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url" || true) == 200 ]]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$logfile" >&2; die "server exited (log above)"; }
    ((SECONDS - start < 120)) || { tail -n 30 "$logfile" >&2; die "$url did not answer within 120 s"; }
    sleep 0.5
  done
}

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  log "building release binaries"
  cargo build --release --bin latchkey --example hello >&2
fi
[[ -x $SERVER_BIN && -x $HELLO_BIN ]] || die "release binaries missing in $CARGO_TARGET_DIR/release"

CALLGRIND=(valgrind --tool=callgrind --instr-atstart=no)

HELLO_PORT=$(pick_port "$PORT_BASE")
log "starting hello under callgrind on 127.0.0.1:$HELLO_PORT"
(exec setsid env HELLO_LISTEN="127.0.0.1:$HELLO_PORT" "${CALLGRIND[@]}" --callgrind-out-file="$TMP/hello.cg" \
  "$HELLO_BIN") >"$TMP/hello.log" 2>&1 &
HELLO_PID=$!
PIDS+=("$HELLO_PID")
wait_up "http://127.0.0.1:$HELLO_PORT/" "$HELLO_PID" "$TMP/hello.log"

SERVER_PORT=$(pick_port $((HELLO_PORT + 1)))
SERVER_URL="http://127.0.0.1:$SERVER_PORT"
log "starting latchkey under callgrind on $SERVER_URL"
(cd "$TMP" && exec setsid env -i "PATH=$PATH" "HOME=${HOME:-/tmp}" \
  "LATCHKEY_LISTEN=127.0.0.1:$SERVER_PORT" "LATCHKEY_DATABASE_URL=sqlite://$TMP/latchkey.db?mode=rwc" \
  "LATCHKEY_BASE_URL=http://localhost:$SERVER_PORT" "LATCHKEY_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" \
  "LATCHKEY_RATE_LIMIT_VERIFY_PER_IP=1000000000" \
  "${CALLGRIND[@]}" --callgrind-out-file="$TMP/latchkey.cg" "$SERVER_BIN" serve) >"$TMP/latchkey.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_up "$SERVER_URL/healthz" "$SERVER_PID" "$TMP/latchkey.log"

# The valgrind process is the one callgrind_control talks to: setsid + exec keep the pid.
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[2]))[sys.argv[1]])' "$1" "$2"; }
post() { # post <path> <json> <out> [cookie]
  curl -sS --fail-with-body --max-time 120 -o "$3" -D "$3.headers" -H 'Content-Type: application/json' \
    -H "Origin: http://localhost:$SERVER_PORT" ${4:+-H "Cookie: $4"} --data "$2" "$SERVER_URL$1" \
    || die "POST $1 failed: $(cat "$3" 2>/dev/null)"
}

log "setting up an account, an organization, an API key and an extension token"
post /api/auth/sign-up/email '{"name":"Bench","email":"bench@example.com","password":"correct horse battery staple"}' \
  "$TMP/signup.json"
COOKIE=$(grep -i '^set-cookie:' "$TMP/signup.json.headers" | sed -E 's/^[Ss]et-[Cc]ookie: *([^;]*).*/\1/' | tr -d '\r' \
  | paste -sd ';' | sed 's/;/; /g')
[[ $COOKIE == *session_token=* && $COOKIE == *session_data=* ]] || die "sign-up set no session cookies"
post /api/auth/organization/create '{"name":"Bench","slug":"bench"}' "$TMP/org.json" "$COOKIE"
post /api/auth/api-key/create '{"name":"bench"}' "$TMP/key.json" "$COOKIE"
API_KEY=$(json_field key "$TMP/key.json")
post /api/extensions/token '{"extensionId":"bench","scopes":["read"],"ttlSeconds":900}' "$TMP/ext.json" "$COOKIE"
EXT_TOKEN=$(json_field token "$TMP/ext.json")

# measure <pid> <cg-file> <lua> <url>: prints "<instructions per request> <requests>".
measure() {
  local pid=$1 file=$2 lua=$3 url=$4 out requests dump totals
  timeout 60 wrk -t1 -c"$CONNECTIONS" -d2s -s "$ROOT/bench/$lua" "$url" >/dev/null 2>&1 || true
  callgrind_control -i on "$pid" >/dev/null
  out=$(timeout 120 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s "$ROOT/bench/$lua" "$url")
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control --dump "$pid" >/dev/null
  requests=$(sed -n 's/.*LATCHKEY_BENCH .*requests=\([0-9]*\).*/\1/p' <<<"$out")
  [[ $out =~ errors_status=0\ errors_socket=0 ]] || die "wrk saw errors on $url: $out"
  sleep 1
  dump=$(ls -t "$file".* | head -n 1)
  totals=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$dump")
  [[ -n $requests && $requests -gt 0 && -n $totals ]] || die "no count for $url ($dump)"
  echo "$((totals / requests)) $requests"
}

ROWS=()
KEEP=${BENCH_CG_KEEP:-}
[[ -n $KEEP ]] && mkdir -p "$KEEP"
scenario() { # scenario <name> <lua> <path>
  local name=$1 lua=$2 path=$3 hello lk slug
  [[ -z ${BENCH_CG_ONLY:-} || $name == *"$BENCH_CG_ONLY"* ]] || return 0
  log "$name"
  read -r hello hello_n < <(measure "$HELLO_PID" "$TMP/hello.cg" "$lua" "http://127.0.0.1:$HELLO_PORT$path")
  read -r lk lk_n < <(measure "$SERVER_PID" "$TMP/latchkey.cg" "$lua" "$SERVER_URL$path")
  if [[ -n $KEEP ]]; then
    slug=$(tr -c 'a-zA-Z0-9\n' '-' <<<"$name")
    cp "$(ls -t "$TMP"/hello.cg.* | head -n 1)" "$KEEP/hello-$slug.cg"
    cp "$(ls -t "$TMP"/latchkey.cg.* | head -n 1)" "$KEEP/latchkey-$slug.cg"
  fi
  log "  hello $hello instr/req ($hello_n requests), latchkey $lk instr/req ($lk_n requests)"
  ROWS+=("| $name | $lk | $hello | $(python3 -c "print(f'{$lk / $hello:.2f}')") |")
}

export BENCH_COOKIE=$COOKIE
scenario "get-session (cookie cache)" get_session.lua /api/auth/get-session
export BENCH_HEADER_NAME=x-api-key BENCH_HEADER_VALUE=$API_KEY
scenario "check with x-api-key" header.lua /api/auth/check
export BENCH_API_KEY=$API_KEY
scenario "api-key/verify" verify_key.lua /api/auth/api-key/verify
scenario "check with session cookie" get_session.lua /api/auth/check
export BENCH_HEADER_NAME=Authorization BENCH_HEADER_VALUE="Bearer $EXT_TOKEN"
scenario "check with Bearer extension token" header.lua /api/auth/check

mkdir -p "$(dirname "$RESULTS")"
{
  echo "# Latchkey instructions per request (callgrind)"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- user-space instructions of the server process / requests completed; wrk -t1 -c$CONNECTIONS -d$DURATION"
  echo "  under valgrind; hello gets the same request. Kernel work is not counted."
  echo
  echo "| scenario | Latchkey instr/req | hello instr/req | ratio |"
  echo "|---|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
} | tee "$RESULTS"
log "report written to $RESULTS"
