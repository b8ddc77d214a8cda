#!/usr/bin/env bash
# Cluster benchmark: a single node (`tern serve --shards 1`) next to a local 3-node cluster (N=3,
# W=2, R=2) on 127.0.0.1-3, driven by loadgen with 100 B values. Writes
# benches/results/cluster.md and the raw loadgen JSON into benches/results/cluster/.
#
# Steps (see benches/README.md, "Cluster"):
#   1. single node: open loop YCSB A at each rate of $RATES; the highest rate whose p99 (worst op)
#      is under 1 ms becomes the comparison rate (the lowest rate if none is);
#   2. cluster: open loop YCSB A token-aware at every rate of $RATES (p99 ratio by load), and
#      --no-token-aware at the comparison rate;
#   3. cluster: closed loop YCSB A, $CONNS connections, token-aware and --no-token-aware.
# Every run first loads its own key range (--load, not measured; disjoint --key-offset per run:
# a fresh loadgen has no causal contexts for keys an earlier one wrote).
#
# Servers listen on 127.0.0.x only, ports from $PORT_BASE, data in a temporary directory; every
# process this script starts is stopped by PID (SIGTERM, SIGKILL after 10 s) on exit, error or
# Ctrl-C. Bounded: about 2 minutes with the defaults (each run is capped by --duration).
#
# Environment knobs (defaults in brackets):
#   GEN_CPU [0]  CONNS [50]  KEYS [20000]  RATES ["2000 5000"]  OPEN_S [10]  CLOSED_S [10]
#   SHARDS [1] (per cluster node)  PORT_BASE [40100]  OUT [benches/results]  BUILD [1]
#   SYNC [periodic:10] (every node's --sync; `durable` puts fdatasync on this one disk, shared by
#   every node, in each write's path: see README)
#   PERF=1: record `perf record -e cpu-clock -g` of node 1 during the token-aware closed run
#   into $OUT/cluster/perf-node1.data (needs perf).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/benches/results}
RAW=$OUT/cluster
GEN_CPU=${GEN_CPU:-0}
CONNS=${CONNS:-50}
KEYS=${KEYS:-20000}
RATES=${RATES:-"2000 5000"}
OPEN_S=${OPEN_S:-10}
CLOSED_S=${CLOSED_S:-10}
SHARDS=${SHARDS:-1}
PORT_BASE=${PORT_BASE:-40100}
SYNC=${SYNC:-periodic:10}

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ "${BUILD:-1}" = 1 ]; then
  log "building tern and loadgen (release)"
  (cd "$ROOT" && cargo build --release -q -p tern -p tern-loadgen)
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
LOADGEN=$BIN/loadgen
TERN=$BIN/tern

TMP=$(mktemp -d /tmp/tern-cluster-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# First port p >= PORT_BASE with p .. p+span-1 free on every address in $2.. (space separated).
free_ports() {
  local span=$1 p q ip busy
  shift
  for ((p = PORT_BASE; p < PORT_BASE + 800; p += span)); do
    busy=0
    for ((q = p; q < p + span; q++)); do
      for ip in "$@"; do
        if ss -Htln "sport = :$q" | grep -qE "($ip|\*|0\.0\.0\.0|\[::\]):$q"; then busy=1; fi
      done
      [ $busy = 1 ] && break
    done
    if [ $busy = 0 ]; then echo "$p"; return 0; fi
  done
  log "no free port range from $PORT_BASE"; return 1
}

# Waits (20 s at most) until $1:$2 .. $1:$2+$3 accept connections while process $4 lives.
wait_ready() {
  local ip=$1 port=$2 span=$3 pid=$4 q ok
  for _ in $(seq 200); do
    ok=1
    for ((q = port; q <= port + span; q++)); do
      (exec 3<>"/dev/tcp/$ip/$q") 2>/dev/null || { ok=0; break; }
    done
    [ $ok = 1 ] && return 0
    kill -0 "$pid" 2>/dev/null || { log "node $pid died while starting"; return 1; }
    sleep 0.1
  done
  log "node $pid did not listen on $ip:$port within 20 s"; return 1
}

stop_pids() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# p99 of the slower op type of a loadgen JSON, in microseconds (integer).
worst_p99() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(int(max(o["latency"]["p99_us"] for o in d["ops"])))' "$1"
}

mkdir -p "$RAW"
rm -f "$RAW"/*.json
OFF=0
# run_lg LABEL FILE ARGS...: one loadgen run on its own key range, JSON into $RAW/FILE.json.
run_lg() {
  local label=$1 file=$2
  shift 2
  log "  $label"
  "$LOADGEN" --protocol tern --cores "$GEN_CPU" --connections "$CONNS" --keys "$KEYS" \
    --value-size 100 --workload a --load --key-offset "$OFF" --quiet --label "$label" \
    --json "$RAW/$file.json" "$@" >"$RAW/$file.txt" ||
    log "  loadgen exited $? for $label (figures kept; see the table)"
  OFF=$((OFF + KEYS))
}

# --- 1. single node ----------------------------------------------------------------------------
SPORT=$(free_ports 2 127.0.0.1)
log "single node on 127.0.0.1:$SPORT"
"$TERN" serve --shards 1 --pin-cpus false --port "$SPORT" --data-dir "$TMP/single" \
  --sync "$SYNC" --log warn 2>"$TMP/single.log" &
SPID=$!
PIDS+=("$SPID")
wait_ready 127.0.0.1 "$SPORT" 1 "$SPID"
RATE=""
for r in $RATES; do
  run_lg "single open ${r}/s" "single-open-$r" --addr "127.0.0.1:$SPORT" --rate "$r" \
    --duration "$OPEN_S" --server-pid "$SPID"
  p=$(worst_p99 "$RAW/single-open-$r.json")
  log "  single node p99 at $r ops/s: $p us"
  if [ "$p" -lt 1000 ]; then RATE=$r; fi
done
[ -n "$RATE" ] || RATE=${RATES%% *}
log "comparison rate: $RATE ops/s"
stop_pids "$SPID"

# --- 2/3. cluster ------------------------------------------------------------------------------
CPORT=$(free_ports $((SHARDS + 1)) 127.0.0.1 127.0.0.2 127.0.0.3)
NODES="1@127.0.0.1:$CPORT/$SHARDS,2@127.0.0.2:$CPORT/$SHARDS,3@127.0.0.3:$CPORT/$SHARDS"
log "cluster $NODES (N=3)"
CPIDS=()
for i in 1 2 3; do
  "$TERN" serve --node-id "$i" --nodes "$NODES" --replication 3 --shards "$SHARDS" \
    --pin-cpus false --sync "$SYNC" --data-dir "$TMP/node$i" --log warn 2>"$TMP/node$i.log" &
  CPIDS+=($!)
  PIDS+=($!)
done
for i in 1 2 3; do wait_ready "127.0.0.$i" "$CPORT" "$SHARDS" "${CPIDS[$((i - 1))]}"; done
Q=(--nodes "$NODES" --replication 3 --w 2 --r 2)

# Token-aware at every rate (the ratio to the single node by load), entry points at the
# comparison rate.
for r in $RATES; do
  run_lg "cluster open ${r}/s token-aware" "cluster-open-ta-$r" "${Q[@]}" --rate "$r" \
    --duration "$OPEN_S"
done
run_lg "cluster open ${RATE}/s entry-points" cluster-open-ep "${Q[@]}" --no-token-aware \
  --rate "$RATE" --duration "$OPEN_S"
PERF_PID=""
if [ "${PERF:-0}" = 1 ]; then
  perf record -e cpu-clock -g -p "${CPIDS[0]}" -o "$RAW/perf-node1.data" -- sleep "$CLOSED_S" \
    2>/dev/null &
  PERF_PID=$!
fi
run_lg "cluster closed token-aware" cluster-closed-ta "${Q[@]}" --duration "$CLOSED_S"
if [ -n "$PERF_PID" ]; then wait "$PERF_PID" || true; fi
run_lg "cluster closed entry-points" cluster-closed-ep "${Q[@]}" --no-token-aware \
  --duration "$CLOSED_S"
stop_pids "${CPIDS[@]}"

# --- report ------------------------------------------------------------------------------------
SP=$(worst_p99 "$RAW/single-open-$RATE.json")
CP=$(worst_p99 "$RAW/cluster-open-ta-$RATE.json")
EP=$(worst_p99 "$RAW/cluster-open-ep.json")
MD=$OUT/cluster.md
{
  echo "# tern: single node vs 3-node cluster"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) CPUs ($(uname -r)),"
  echo "tern $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown). All servers and the"
  echo "generator on this one machine: generator pinned to CPU $GEN_CPU, nodes unpinned (every"
  echo "process can use both CPUs). Data on the same disk, every node --sync $SYNC."
  echo "Cluster: 3 nodes x $SHARDS shard(s) on 127.0.0.1-3, N=3, W=2, R=2. Single node: 1 shard,"
  echo "N=1. YCSB A (50% get, 50% put), 100 B values, $KEYS keys per run loaded first (not measured),"
  echo "uniform keys, $CONNS connections, no pipelining. Closed runs: $CLOSED_S s. Open runs: $OPEN_S s,"
  echo "latency from each request's intended start."
  echo
  echo "Open-loop comparison at $RATE ops/s (the highest of $RATES whose single-node p99 < 1 ms):"
  echo
  echo "| p99 (worst op) | single node | cluster, token-aware | cluster, entry points |"
  echo "|---|---|---|---|"
  echo "| us | $SP | $CP | $EP |"
  echo "| ratio to single | 1.00 | $(python3 -c "print(f'{$CP/$SP:.2f}')") | $(python3 -c "print(f'{$EP/$SP:.2f}')") |"
  echo
  echo "By rate (p99 of the worse op, token-aware cluster):"
  echo
  echo "| ops/s | single node us | cluster us | ratio |"
  echo "|---:|---:|---:|---:|"
  for r in $RATES; do
    s1=$(worst_p99 "$RAW/single-open-$r.json")
    c1=$(worst_p99 "$RAW/cluster-open-ta-$r.json")
    echo "| $r | $s1 | $c1 | $(python3 -c "print(f'{$c1/$s1:.2f}')") |"
  done
  echo
  echo "All runs (per op type):"
  echo
  files=()
  for r in $RATES; do files+=("$RAW/single-open-$r.json"); done
  for r in $RATES; do files+=("$RAW/cluster-open-ta-$r.json"); done
  for f in cluster-open-ep cluster-closed-ta cluster-closed-ep; do
    files+=("$RAW/$f.json")
  done
  "$LOADGEN" table "${files[@]}"
} >"$MD"
log "wrote $MD"
cat "$MD"
