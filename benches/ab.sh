#!/usr/bin/env bash
# A/B of two tern binaries on the workloads of benches/vs_redis.sh (single shard, durable PUT and
# GET, 100 B and 1 KiB values), interleaved A B A B ... so both see the same minutes of a shared,
# noisy machine. Prints per-round figures and the medians of server CPU per request and ops/s.
#
# Usage: benches/ab.sh OLD_TERN NEW_TERN [ROUNDS]
# The same loadgen (target/release/loadgen, built if missing) drives both. Servers run on
# 127.0.0.1 only, with data in a temporary directory, and are stopped by PID on exit (trap).
# Every load is bounded by a request count and a duration.
#
# Environment knobs (defaults in brackets): GEN_CPU [0] SRV_CPU [1] CONNS [50] REQUESTS [200000]
#   CAP_S [5] KEYS [100000] PORT_BASE [30600] WORKLOADS ["put-100B get-100B put-1KiB get-1KiB"]
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 OLD_TERN NEW_TERN [ROUNDS]" >&2; exit 2; }
A=$(readlink -f "$1")
B=$(readlink -f "$2")
ROUNDS=${3:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GEN_CPU=${GEN_CPU:-0}
SRV_CPU=${SRV_CPU:-1}
CONNS=${CONNS:-50}
REQUESTS=${REQUESTS:-200000}
CAP_S=${CAP_S:-5}
KEYS=${KEYS:-100000}
PORT_BASE=${PORT_BASE:-30600}
WORKLOADS=${WORKLOADS:-"put-100B get-100B put-1KiB get-1KiB"}
LOADGEN=${LOADGEN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen}
[ -x "$LOADGEN" ] || (cd "$ROOT" && cargo build --release -q -p tern-loadgen)

log() { printf '[ab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

TMP=$(mktemp -d /tmp/tern-ab.XXXXXX)
PID=""
cleanup() {
  if [ -n "$PID" ]; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() {
  local p
  for ((p = PORT_BASE; p < PORT_BASE + 500; p += 2)); do
    if ! ss -Htln "sport = :$p" | grep -q . && ! ss -Htln "sport = :$((p + 1))" | grep -q .; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# Runs one round of every workload against binary $1 (label $2); appends "label workload cpu ops"
# lines to $TMP/results.
round() {
  local bin=$1 label=$2 dir port off=0
  dir=$TMP/$label-$RANDOM
  port=$(free_port)
  taskset -c "$SRV_CPU" "$bin" serve --shards 1 --pin-cpus false --port "$port" \
    --data-dir "$dir" --sync durable --log warn 2>"$dir.log" &
  PID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { log "server died: $(tail -3 "$dir.log")"; exit 1; }
    sleep 0.1
  done
  for w in $WORKLOADS; do
    local op=${w%-*} sz=${w#*-} size extra=()
    size=$([ "$sz" = 1KiB ] && echo 1024 || echo 100)
    if [ "$op" = get ]; then extra=(--read-ratio 1 --load); else extra=(--read-ratio 0); fi
    "$LOADGEN" --protocol tern --addr "127.0.0.1:$port" --cores "$GEN_CPU" \
      --connections "$CONNS" --keys "$KEYS" --server-pid "$PID" --quiet --label "$label $w" \
      --json "$TMP/out.json" --value-size "$size" --requests "$REQUESTS" --duration "$CAP_S" \
      --key-offset "$off" "${extra[@]}" >/dev/null
    off=$((off + 1000000))
    python3 - "$TMP/out.json" "$label" "$w" >>"$TMP/results" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(sys.argv[2], sys.argv[3], d["server_cpu_us_per_request"], round(d["ops_per_sec"]), d["total_errors"])
EOF
  done
  kill -TERM "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  rm -rf "$dir"
}

log "A = $A"
log "B = $B"
for r in $(seq "$ROUNDS"); do
  log "round $r/$ROUNDS"
  round "$A" A
  round "$B" B
done

python3 - "$TMP/results" "$WORKLOADS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("per round (label workload server_cpu_us/req ops/s errors):")
for r in rows:
    print("  " + " ".join(r))
print()
print(f"{'workload':<10} {'A cpu us/req':>13} {'B cpu us/req':>13} {'B/A':>6} {'A ops/s':>9} {'B ops/s':>9} {'B/A':>6}")
for w in sys.argv[2].split():
    a = [r for r in rows if r[0] == "A" and r[1] == w]
    b = [r for r in rows if r[0] == "B" and r[1] == w]
    ac = statistics.median(float(r[2]) for r in a)
    bc = statistics.median(float(r[2]) for r in b)
    ao = statistics.median(float(r[3]) for r in a)
    bo = statistics.median(float(r[3]) for r in b)
    print(f"{w:<10} {ac:>13.2f} {bc:>13.2f} {bc/ac:>6.3f} {ao:>9.0f} {bo:>9.0f} {bo/ao:>6.3f}")
print(f"(medians of {len(a)} rounds each, interleaved A B A B)")
EOF
