# Helpers shared by bench/scale.sh and bench/soak.sh (sourced, not run). The same conventions as
# bench/run.sh: processes are tracked by pid and stopped by pid (never by name), servers run with setsid
# in a clean environment, and every load targets 127.0.0.1.
#
# The sourcing script sets ROOT and TMP, and calls `bench_cleanup_pids` from its EXIT trap.

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

# "1m05s" for a number of seconds.
human_seconds() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

PG_HOST=${BENCH_PG_HOST:-127.0.0.1}
PG_PORT=${BENCH_PG_PORT:-5432}
PG_USER=${BENCH_PG_USER:-postgres}
pg() { PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"; }
pg_url() { echo "postgres://$PG_USER@$PG_HOST:$PG_PORT/$1"; }

# Processes this script started; bench_cleanup_pids stops each of them by pid, nothing else.
PIDS=()

# True while the process exists and is not a zombie.
alive() {
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z ]]
}

forget_pid() {
  local kept=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

# SIGTERM, up to 10 s to exit, then SIGKILL; reaps the child and forgets it. A process started with
# setsid leads its own group: the group is signalled too.
stop_pid() {
  local pid=$1 target=$1 i
  kill -0 -- "-$pid" 2>/dev/null && target="-$pid"
  if alive "$pid"; then
    kill -TERM -- "$target" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL -- "$target" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || true
  if [[ $target == -* ]]; then kill -KILL -- "$target" 2>/dev/null || true; fi
  forget_pid "$pid"
}

bench_cleanup_pids() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}

# A port in BENCH_PORT_BASE..+19 that nothing listens on.
pick_port() {
  local base=${BENCH_PORT_BASE:-18080} p
  for ((p = base; p < base + 20; p++)); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port in $base-$((base + 19)) (set BENCH_PORT_BASE)"
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

# rss_mb <pid> <VmRSS|VmHWM>: from /proc/<pid>/status, in MB (one decimal).
rss_mb() { awk -v key="$2:" '$1 == key { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# The LATCHKEY_BENCH line of a wrk output file (bench/report.lua) as "k=v ..." without the tag.
bench_line() {
  local line
  line=$(grep '^LATCHKEY_BENCH ' "$1" | tail -n 1) || return 1
  echo "${line#LATCHKEY_BENCH }"
}

# field <k=v line> <key>
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n 1; }

ensure_tools() {
  local missing=() tool
  for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  ((${#missing[@]} == 0)) && return 0
  local packages=() SUDO=""
  for tool in "${missing[@]}"; do
    case $tool in
      wrk) packages+=(wrk) ;;
      gnuplot) packages+=(gnuplot-nox) ;;
      psql) packages+=(postgresql-client) ;;
      *) die "$tool is required" ;;
    esac
  done
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "missing: ${missing[*]}; install ${packages[*]}"
    SUDO=sudo
  fi
  log "installing ${packages[*]} with apt-get"
  $SUDO apt-get install -y "${packages[@]}" || { $SUDO apt-get update && $SUDO apt-get install -y "${packages[@]}"; } \
    || die "could not install ${packages[*]}"
}
