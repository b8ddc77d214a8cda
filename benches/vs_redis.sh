#!/usr/bin/env bash
# Side-by-side benchmark: Redis in three persistence modes and tern (1 and 2 shards), driven one
# after another by the same loadgen workloads in one run. Writes a Markdown table and SVG plots
# into benches/results/ (see benches/README.md for what each figure means).
#
# Servers run on 127.0.0.1 only, on free ports from $PORT_BASE, with their data in a temporary
# directory; every server this script starts is stopped by PID on exit (trap), even on error.
# Every load is bounded by a request count and a duration, so the script always ends
# (about 4-5 minutes with the defaults on a 2-core machine).
#
# Environment knobs (defaults in brackets):
#   GEN_CPU [0]  SRV_CPU [1]  CONNS [50]  REQUESTS [200000]  CAP_S [5] (time cap per closed run)
#   KEYS [100000]  OPEN_RATE [20000]  OPEN_S [20]  PORT_BASE [30400]  OUT [benches/results]
#   SERVERS ["redis-none redis-everysec redis-always tern-1 tern-2"]
#   QUICK=1 shrinks everything for a smoke test (seconds instead of minutes).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/benches/results}
GEN_CPU=${GEN_CPU:-0}
SRV_CPU=${SRV_CPU:-1}
CONNS=${CONNS:-50}
REQUESTS=${REQUESTS:-200000}
CAP_S=${CAP_S:-5}
KEYS=${KEYS:-100000}
OPEN_RATE=${OPEN_RATE:-20000}
OPEN_S=${OPEN_S:-20}
PORT_BASE=${PORT_BASE:-30400}
SERVERS=${SERVERS:-"redis-none redis-everysec redis-always tern-1 tern-2"}
if [ "${QUICK:-0}" = 1 ]; then
  REQUESTS=5000 CAP_S=2 KEYS=2000 OPEN_RATE=2000 OPEN_S=2
fi

log() { printf '[vs_redis %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools -------------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null; then
  log "redis-server missing: installing it with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
log "building tern and loadgen (release)"
(cd "$ROOT" && cargo build --release -q -p tern -p tern-loadgen)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
LOADGEN=$BIN/loadgen
TERN=$BIN/tern

# --- servers -----------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/tern-vs-redis.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# First port p >= PORT_BASE such that p .. p+span-1 are all free on 127.0.0.1.
free_ports() {
  local span=$1 p q busy
  for ((p = PORT_BASE; p < PORT_BASE + 500; p++)); do
    busy=0
    for ((q = p; q < p + span; q++)); do
      if ss -Htln "sport = :$q" | grep -q .; then busy=1; break; fi
    done
    if [ $busy = 0 ]; then echo "$p"; return 0; fi
  done
  log "no free port range from $PORT_BASE"; return 1
}

# Waits (10 s at most) until 127.0.0.1:$1 accepts connections while process $2 lives.
wait_port() {
  local port=$1 pid=$2
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { log "server $pid died while starting"; return 1; }
    sleep 0.1
  done
  log "server $pid did not listen on $port within 10 s"; return 1
}

stop_server() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "server $pid ignored SIGTERM for 10 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# Starts server $1; sets SRV_PID, SRV_PORT, SRV_PROTO, SRV_NOTE.
start_server() {
  local name=$1 dir=$TMP/$1
  mkdir -p "$dir"
  SRV_NOTE=""
  case $name in
    redis-*)
      local mode=${name#redis-} extra=()
      case $mode in
        none) extra=(--appendonly no) ;;
        everysec) extra=(--appendonly yes --appendfsync everysec) ;;
        always) extra=(--appendonly yes --appendfsync always) ;;
        *) log "unknown redis mode $mode"; return 1 ;;
      esac
      SRV_PORT=$(free_ports 1)
      taskset -c "$SRV_CPU" redis-server --port "$SRV_PORT" --bind 127.0.0.1 --dir "$dir" \
        --save '' "${extra[@]}" --daemonize no --logfile "$dir/log" &
      SRV_PID=$!
      SRV_PROTO=resp
      ;;
    tern-*)
      local shards=${name#tern-} pin=()
      SRV_PORT=$(free_ports $((shards + 1)))
      if [ "$shards" = 1 ]; then
        # One shard on the server CPU, away from the generator.
        pin=(taskset -c "$SRV_CPU")
        "${pin[@]}" "$TERN" serve --shards 1 --pin-cpus false --port "$SRV_PORT" \
          --data-dir "$dir/data" --sync durable --log warn 2>"$dir/log" &
      else
        # Every shard pinned to its own CPU (shard i on CPU i): shares CPU 0 with the generator.
        "$TERN" serve --shards "$shards" --pin-cpus true --port "$SRV_PORT" \
          --data-dir "$dir/data" --sync durable --log warn 2>"$dir/log" &
      fi
      SRV_PID=$!
      SRV_PROTO=tern
      ;;
    *) log "unknown server $name"; return 1 ;;
  esac
  PIDS+=("$SRV_PID")
  wait_port "$SRV_PORT" "$SRV_PID"
  if [ -f "$dir/log" ] && grep -qi "memory only" "$dir/log"; then
    SRV_NOTE="$(grep -i -m1 "memory only" "$dir/log" | sed 's/.*WARN //')"
  fi
}

# --- workloads ---------------------------------------------------------------------------------
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.svg "$OUT"/vs_redis.md
NOTES=()

run_lg() {
  local label=$1 file=$2
  shift 2
  log "  $label"
  "$LOADGEN" --protocol "$SRV_PROTO" --addr "127.0.0.1:$SRV_PORT" --cores "$GEN_CPU" \
    --connections "$CONNS" --keys "$KEYS" --server-pid "$SRV_PID" --quiet \
    --label "$label" --json "$OUT/$file.json" "$@" >"$TMP/$file.txt" ||
    log "  loadgen exited $? for $label (figures kept; see the table)"
}

for name in $SERVERS; do
  log "server $name"
  start_server "$name"
  if [ -n "$SRV_NOTE" ]; then NOTES+=("$name: $SRV_NOTE"); fi
  # Disjoint key ranges per workload: a fresh loadgen process has no causal contexts for keys
  # an earlier one wrote, and tern would keep its blind writes as siblings.
  off=0
  for size in 100 1024; do
    sz=$([ "$size" = 1024 ] && echo 1KiB || echo 100B)
    run_lg "$name put $sz" "$name-put-$sz" --read-ratio 0 --value-size "$size" \
      --requests "$REQUESTS" --duration "$CAP_S" --key-offset $off
    off=$((off + 1000000))
    run_lg "$name get $sz" "$name-get-$sz" --read-ratio 1 --value-size "$size" --load \
      --requests "$REQUESTS" --duration "$CAP_S" --key-offset $off
    off=$((off + 1000000))
  done
  run_lg "$name ycsb-a open ${OPEN_RATE}/s" "$name-open" --workload a --value-size 100 --load \
    --rate "$OPEN_RATE" --duration "$OPEN_S" --key-offset $off
  stop_server "$SRV_PID"
done

# --- report ------------------------------------------------------------------------------------
MD=$OUT/vs_redis.md
{
  echo "# tern vs Redis"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) CPUs ($(uname -r)), $(redis-server --version | cut -d' ' -f1-3),"
  echo "tern $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown). Generator on CPU $GEN_CPU,"
  echo "servers on CPU $SRV_CPU (tern-2: shards on CPUs 0 and 1). $CONNS connections, no pipelining,"
  echo "$KEYS keys per workload. Closed loop: $REQUESTS requests or $CAP_S s, whichever comes first."
  echo "Open loop: YCSB A at $OPEN_RATE ops/s for $OPEN_S s, latency from each request's intended start."
  echo "Server CPU: utime+stime of the server process over the measured phase / requests."
  echo
  if [ ${#NOTES[@]} -gt 0 ]; then
    for n in "${NOTES[@]}"; do echo "- NOTE $n"; done
    echo
  fi
  files=()
  for name in $SERVERS; do
    for w in put-100B get-100B put-1KiB get-1KiB open; do
      if [ -f "$OUT/$name-$w.json" ]; then files+=("$OUT/$name-$w.json"); fi
    done
  done
  "$LOADGEN" table "${files[@]}"
} >"$MD"
for w in put-100B get-100B put-1KiB get-1KiB open; do
  files=()
  for name in $SERVERS; do
    if [ -f "$OUT/$name-$w.json" ]; then files+=("$OUT/$name-$w.json"); fi
  done
  if [ ${#files[@]} -gt 0 ]; then
    "$LOADGEN" plot --title "latency by percentile: $w" --out "$OUT/vs_redis-$w.svg" "${files[@]}"
  fi
done
log "wrote $MD and $OUT/vs_redis-*.svg"
cat "$MD"
