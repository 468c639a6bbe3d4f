#!/usr/bin/env bash
# Durable ingest, closed loop, through two router nodes into a 3-replica NATS JetStream stream
# (docs/journal-nats.md), against one router on the file journal, in the same run on this
# machine. Everything (loadgens, routers, three nats-servers) shares the machine's cores, so the
# ratio is that of this box; the CPU per event (user + system, from /proc/<pid>/stat) of the
# routers and of the nats-servers is what predicts throughput on separate machines.
#   bench/cluster.sh                 DURATION (s, default 10), CONNECTIONS (per loadgen,
#                                    default 32), NO_BUILD=1 to use the existing build,
#                                    DVROUTER_BIN another router binary (an A/B)
# Ingest only (no adapters); every process listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10}
connections=${CONNECTIONS:-32}
bin=${DVROUTER_BIN:-$PWD/build/release/dvrouter}  # another build for an A/B
lg=$PWD/build/release/bench/dvrouter-loadgen
server=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$server" ] || { echo "nats-server is not installed (scripts/install-deps.sh)" >&2; exit 1; }
if [ "${NO_BUILD:-0}" != 1 ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release --target dvrouter dvrouter-loadgen >/dev/null
fi

# shellcheck source=bench/bench_lib.sh
source bench/bench_lib.sh
json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
cpu_sum() { local s=0 p; for p in "$@"; do s=$(python3 -c "print($s + $(cpu_s "$p"))"); done; echo "$s"; }
fixtures=tests/fixtures/dataverse
loadgen() {
  "$lg" --body $fixtures/update-msdyn_agentstatus-postop-async.json \
    --body $fixtures/create-msdyn_agentstatus-postop-sync.json --records 100000 \
    --duration "$duration" --connections "$connections" "$@" >/dev/null
}
wait_ready() {  # admin port, pid
  for _ in $(seq 300); do
    curl -sf "127.0.0.1:$1/readyz" >/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
export DVROUTER_BENCH_KEY=bench

# (1) One router on the file journal (fdatasync per group commit).
port=$(free_port); admin=$(free_port)
cat > "$work/file.yaml" <<YAML
ingress: {listen: 127.0.0.1:$port, auth: {mode: webhook_key, secret: "\${DVROUTER_BENCH_KEY}"}}
admin: {listen: 127.0.0.1:$admin}
journal: {data_dir: $work/file-data, disk_budget_bytes: 64GiB}
adapters: {}
YAML
"$bin" serve -c "$work/file.yaml" 2>"$work/file.log" &
file_pid=$!
pids+=($file_pid)
wait_ready "$admin" "$file_pid" || { cat "$work/file.log"; exit 1; }
echo "file journal: one node, closed loop, $connections connections, ${duration}s"
c0=$(cpu_s "$file_pid")
loadgen --url "http://127.0.0.1:$port/webhooks/dataverse?code=bench" --json "$work/file.json" --seed 1
file_cpu=$(python3 -c "print($(cpu_s "$file_pid") - $c0)")
file_ok=$(json_field "$work/file.json" "['ok']")
file_rate=$(json_field "$work/file.json" "['ok_rate']")
file_p99=$(json_field "$work/file.json" "['latency_ms']['p99']")
stop_pid "$file_pid"

# (2) Three clustered nats-servers, two nodes on a stream of 3 replicas, one loadgen per node.
urls=""; nats_pids=(); monitors=()
for i in 0 1 2; do
  client[$i]=$(free_port); route[$i]=$(free_port); monitors[$i]=$(free_port)
done
for i in 0 1 2; do
  routes=""
  for k in 0 1 2; do [ "$k" = "$i" ] || routes+="    nats-route://127.0.0.1:${route[$k]}"$'\n'; done
  mkdir -p "$work/n$i"
  cat > "$work/n$i/nats.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:${client[$i]}
http: 127.0.0.1:${monitors[$i]}
jetstream { store_dir: "$work/n$i/store" }
cluster {
  name: dvrouter-bench
  listen: 127.0.0.1:${route[$i]}
  routes: [
$routes  ]
}
CONF
  "$server" -c "$work/n$i/nats.conf" >"$work/n$i/nats.log" 2>&1 &
  nats_pids+=($!)
  pids+=($!)
  urls+="${urls:+, }nats://127.0.0.1:${client[$i]}"
done
# JetStream answers once the servers have elected their meta leader.
for i in 0 1 2; do
  for _ in $(seq 300); do
    curl -sf "127.0.0.1:${monitors[$i]}/healthz" >/dev/null && break
    sleep 0.1
  done
done
node_pids=(); node_ports=()
for i in 0 1; do
  port=$(free_port); admin=$(free_port)
  cat > "$work/node-$i.yaml" <<YAML
ingress: {listen: 127.0.0.1:$port, auth: {mode: webhook_key, secret: "\${DVROUTER_BENCH_KEY}"}}
admin: {listen: 127.0.0.1:$admin}
journal:
  data_dir: $work/node-$i
  backend: nats
  nats: {servers: [$urls], stream: DVBENCH, replicas: 3, max_bytes: 2GiB}
cluster: {node: node-$i}
adapters: {}
YAML
  ok=0
  for _ in 1 2 3; do  # a stream just created may still be electing its leader
    "$bin" serve -c "$work/node-$i.yaml" 2>>"$work/node-$i.log" &
    pid=$!
    pids+=($pid)
    if wait_ready "$admin" "$pid"; then ok=1; break; fi
    stop_pid "$pid"
  done
  [ "$ok" = 1 ] || { cat "$work/node-$i.log"; exit 1; }
  node_pids+=($pid)
  node_ports+=($port)
done
echo "nats journal: two nodes, 3 replicas, closed loop, $connections connections per node, ${duration}s"
r0=$(cpu_sum "${node_pids[@]}"); n0=$(cpu_sum "${nats_pids[@]}")
loadgen --url "http://127.0.0.1:${node_ports[0]}/webhooks/dataverse?code=bench" \
  --json "$work/nats-0.json" --seed 2 &
lg0=$!
loadgen --url "http://127.0.0.1:${node_ports[1]}/webhooks/dataverse?code=bench" \
  --json "$work/nats-1.json" --seed 3 &
lg1=$!
wait "$lg0" || true
wait "$lg1" || true
router_cpu=$(python3 -c "print($(cpu_sum "${node_pids[@]}") - $r0)")
nats_cpu=$(python3 -c "print($(cpu_sum "${nats_pids[@]}") - $n0)")
nats_ok=$(python3 -c "print($(json_field "$work/nats-0.json" "['ok']") + $(json_field "$work/nats-1.json" "['ok']"))")
nats_rate=$(python3 -c "print($(json_field "$work/nats-0.json" "['ok_rate']") + $(json_field "$work/nats-1.json" "['ok_rate']"))")
nats_p99=$(python3 -c "print(max($(json_field "$work/nats-0.json" "['latency_ms']['p99']"), $(json_field "$work/nats-1.json" "['latency_ms']['p99']")))")
refused=$(python3 -c "
import json
n = 0
for f in ['$work/nats-0.json', '$work/nats-1.json']:
    n += sum(v for k, v in json.load(open(f))['status'].items() if not k.startswith('2'))
print(n)")

python3 - "$file_rate" "$file_ok" "$file_cpu" "$file_p99" "$nats_rate" "$nats_ok" "$router_cpu" \
  "$nats_cpu" "$nats_p99" "$refused" <<'PY'
import sys
fr, fo, fc, fp, nr, no, rc, nc, npp, refused = map(float, sys.argv[1:])
us = lambda cpu, n: cpu / n * 1e6 if n else float('nan')
print(f"file journal, 1 node:        {fr:8.0f} events/s  p99 {fp:7.2f} ms  router {us(fc, fo):6.1f} us CPU/event")
print(f"nats, 2 nodes, 3 replicas:   {nr:8.0f} events/s  p99 {npp:7.2f} ms  routers {us(rc, no):6.1f} us CPU/event,"
      f" nats-servers {us(nc, no):6.1f} us CPU/event (all three)")
print(f"ratio nats / file: {nr / fr:.2f}; non-2xx answers in the nats run: {refused:.0f}")
PY
