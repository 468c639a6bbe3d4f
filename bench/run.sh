#!/usr/bin/env bash
# Runs the standard end-to-end scenarios on this machine and writes a results table to
# bench/results/<date>-<host>.md (also printed):
#   (a) ingest only, fsync on: maximum events/s (closed loop), then ack latency at 50% of it
#       (open loop, latency from each request's due time);
#   (b) the same load against nginx answering 200 (one worker), the HTTP ceiling, and the ratio;
#   (c) ingest delivered to the adapters present (today: the lake) at a sustained open-loop rate
#       (RATE_C, default 15000/s): delivery lag p50/p99/max per event (lake file finalization
#       time minus the event's received time) and zero loss (rows counted at the sink).
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
adapters: {}   # ingest only
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

# (c) the same ingest with delivery to the lake, at a sustained rate below the maximum.
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
rate_c=${RATE_C:-15000}
cport=$(free_port); cadmin=$(free_port)
cat > "$work/router-c.yaml" <<YAML
ingress:
  listen: 127.0.0.1:$cport
  io_threads: 2
  max_connections: 4096
  auth:
    mode: webhook_key
    secret: \${DVROUTER_BENCH_KEY}
admin:
  listen: 127.0.0.1:$cadmin
journal:
  data_dir: $work/data-c
  disk_budget_bytes: 64GiB
adapters:
  lake:
    type: lake
    roll_interval: 1s
    batch: {max_events: 500, linger: 20ms}
    max_in_flight: 64
routes:
  - adapters: [lake]
YAML
DVROUTER_BENCH_KEY=bench ./build/release/dvrouter serve -c "$work/router-c.yaml" 2>"$work/router-c.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$cadmin/readyz" >/dev/null && break; sleep 0.1; done
echo "(c) ingest + lake, open loop at $rate_c/s"
loadgen --url "http://127.0.0.1:$cport/webhooks/dataverse?code=bench" --rate "$rate_c" \
  --json "$work/c-lake.json" --seed 4
# Wait (bounded) until the lake has caught up, then count and time every row.
for _ in $(seq 300); do
  lag=$(curl -s "127.0.0.1:$cadmin/metrics" | awk '/^dvrouter_delivery_lag_events\{adapter="lake"\}/{print $2}')
  [ "${lag:-1}" = "0" ] && break
  sleep 0.1
done
c_summary=$(python3 - "$work/data-c/lake" "$work/c-lake.json" <<'PY'
import glob, json, os, sys, datetime
rows, ids, lags = 0, set(), []
for path in glob.glob(sys.argv[1] + "/*/*/part-*.jsonl"):
    final = os.stat(path).st_mtime
    for line in open(path):
        r = json.loads(line); rows += 1; ids.add(r["event_id"])
        t = datetime.datetime.strptime(r["received_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
        lags.append(final - t)
lags.sort()
ok = json.load(open(sys.argv[2]))["ok"]
q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] * 1000 if lags else float("nan")
print(f"acknowledged {ok}, lake rows {rows}, distinct event ids {len(ids)}, "
      f"lost {max(0, ok - len(ids))}, duplicated {rows - len(ids)}; "
      f"delivery lag ms p50 {q(0.5):.0f}, p99 {q(0.99):.0f}, max {q(1.0):.0f}")
PY
)
echo "(c) $c_summary"

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
  for f in a-max a-half b-nginx c-lake; do
    python3 - "$work/$f.json" "$f" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency_ms"]
name = {"a-max": "(a) dvrouter, fsync, closed loop (max)",
        "a-half": "(a) dvrouter, fsync, open loop at 50% of max",
        "b-nginx": "(b) nginx return 200, closed loop",
        "c-lake": "(c) dvrouter + lake delivery, open loop"}[sys.argv[2]]
bad = r["requests"] - r["ok"]
print(f"| {name} | {r['achieved_rate']:.0f} | {l['p50']:.2f} | {l['p90']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {l['max']:.2f} | {bad} |")
PY
  done
  echo
  echo "dvrouter / nginx throughput ratio: $(python3 -c "print(f'{$max_rate/$nginx_rate:.2f}')")"
  echo "Mean events per group commit (fdatasync) over the dvrouter runs: $group"
  echo "fdatasync calls slower than 100 ms over the dvrouter runs: $slow_syncs"
  echo "(c) delivery to the lake (roll_interval 1s): $c_summary"
} > "$out"
cat "$out"
