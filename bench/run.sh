#!/usr/bin/env bash
# Runs the standard end-to-end scenarios on this machine and writes a results table to
# bench/results/<date>-<host>.md (also printed):
#   (a) ingest only, fsync on: maximum events/s (closed loop), then ack latency at 50% of it
#       (open loop, latency from each request's due time);
#   (b) the same load against nginx answering 200 (one worker), the HTTP ceiling, and the ratio;
#   (c) delivery to adapters: runs once adapters exist (see bench/README.md).
# Everything listens on 127.0.0.1 and is stopped on exit. DURATION (s) and CONNECTIONS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
duration=${DURATION:-10}
connections=${CONNECTIONS:-32}

./scripts/install-deps.sh
if ! command -v nginx >/dev/null 2>&1; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nginx-light
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cmake --preset release >/dev/null
cmake --build --preset release --target dvrouter dvrouter-loadgen >/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fixtures=tests/fixtures/dataverse
bodies=(--body $fixtures/update-msdyn_agentstatus-postop-async.json
        --body $fixtures/create-msdyn_agentstatus-postop-sync.json
        --body $fixtures/update-contact-postop-async.json)
loadgen() { ./build/release/bench/dvrouter-loadgen "${bodies[@]}" --records 100000 --hot-share 0.1 \
              --hot-records 100 --connections "$connections" --duration "$duration" "$@"; }
json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

# (a) dvrouter, default durability.
port=$(free_port); admin=$(free_port)
cat > "$work/router.yaml" <<YAML
ingress:
  listen: 127.0.0.1:$port
  io_threads: 2
  max_connections: 4096
  auth:
    mode: webhook_key
    secret: \${DVROUTER_BENCH_KEY}
admin:
  listen: 127.0.0.1:$admin
journal:
  data_dir: $work/data
  disk_budget_bytes: 64GiB
YAML
DVROUTER_BENCH_KEY=bench ./build/release/dvrouter serve -c "$work/router.yaml" 2>"$work/router.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port/webhooks/dataverse?code=bench"

echo "(a) dvrouter closed loop, $connections connections, ${duration}s"
loadgen --url "$url" --json "$work/a-max.json" --seed 1
max_rate=$(json_field "$work/a-max.json" "['achieved_rate']")
half=$(python3 -c "print(int($max_rate/2))")
echo "(a) dvrouter open loop at $half/s"
loadgen --url "$url" --rate "$half" --json "$work/a-half.json" --seed 2
metrics=$(curl -s "127.0.0.1:$admin/metrics")
group=$(awk '/^dvrouter_journal_group_commit_events_sum/{s=$2} /^dvrouter_journal_group_commit_events_count/{c=$2} END{if(c>0) printf "%.1f", s/c}' <<<"$metrics")
# fdatasync calls slower than 100 ms over both dvrouter runs: disk stalls show here.
slow_syncs=$(awk '/^dvrouter_journal_fsync_duration_seconds_bucket\{le="0.1"\}/{b=$2} /^dvrouter_journal_fsync_duration_seconds_count/{c=$2} END{printf "%d of %d", c-b, c}' <<<"$metrics")

# (b) nginx returning 200, one worker, same load.
nport=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  client_max_body_size 1m;
  client_body_buffer_size 64k;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nport;
    location / { return 200 '{"status":"ok"}'; }
  }
}
CONF
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
for _ in $(seq 50); do curl -sf -X POST -d '{}' "127.0.0.1:$nport/" >/dev/null && break; sleep 0.1; done
echo "(b) nginx closed loop"
loadgen --url "http://127.0.0.1:$nport/webhooks/dataverse" --json "$work/b-nginx.json" --seed 3
nginx_rate=$(json_field "$work/b-nginx.json" "['achieved_rate']")

mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%d)-$(hostname -s).md"
{
  echo "# bench/run.sh results, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)."
  echo "Load generator on the same machine: $connections connections, ${duration}s per run, bodies 7.8-13.5 KB (mean ~10.4 KB)."
  echo
  echo "| scenario | rate (req/s) | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | non-2xx |"
  echo "|---|---|---|---|---|---|---|---|"
  for f in a-max a-half b-nginx; do
    python3 - "$work/$f.json" "$f" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency_ms"]
name = {"a-max": "(a) dvrouter, fsync, closed loop (max)",
        "a-half": "(a) dvrouter, fsync, open loop at 50% of max",
        "b-nginx": "(b) nginx return 200, closed loop"}[sys.argv[2]]
bad = r["requests"] - r["ok"]
print(f"| {name} | {r['achieved_rate']:.0f} | {l['p50']:.2f} | {l['p90']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {l['max']:.2f} | {bad} |")
PY
  done
  echo
  echo "dvrouter / nginx throughput ratio: $(python3 -c "print(f'{$max_rate/$nginx_rate:.2f}')")"
  echo "Mean events per group commit (fdatasync) over the dvrouter runs: $group"
  echo "fdatasync calls slower than 100 ms over the dvrouter runs: $slow_syncs"
  echo "(c) delivery through adapters: not run (no adapters yet)."
} > "$out"
cat "$out"
