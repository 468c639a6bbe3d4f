#!/usr/bin/env bash
# Events/s delivered to the ERP simulator at a simulated latency (default 20 ms): the load
# generator posts to dvrouter for DURATION seconds (closed loop), dvrouter delivers every event
# to dvrouter-erp-sim with the erp adapter (adaptive concurrency up to MAX_CONCURRENCY), and the
# delivered rate is the number of orders the simulator created divided by the time from the
# first post until the last order (so a backlog counts against it). Same-run baseline: the load
# generator straight against the simulator with as many connections as the adapter may use.
# With WRITEBACK=1 (the default) a second run adds a dataverse write-back of the ERP's statuses
# (to dvrouter-dataverse-sim), to show what the status records cost the ERP path.
# Everything on 127.0.0.1, stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10}
latency=${LATENCY_MS:-20}
max_conc=${MAX_CONCURRENCY:-256}
cmake --preset release >/dev/null
cmake --build --preset release --target dvrouter dvrouter-loadgen dvrouter-erp-sim >/dev/null

# shellcheck source=bench/bench_lib.sh
source bench/bench_lib.sh
stat() { curl -s "127.0.0.1:$simport/_stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

simport=$(free_port)
./build/release/tests/dvrouter-erp-sim --listen "127.0.0.1:$simport" --latency-ms "$latency" \
  2>"$work/sim.log" &
sim_pid=$!
pids+=($sim_pid)
for _ in $(seq 100); do curl -sf "127.0.0.1:$simport/_stats" >/dev/null && break; sleep 0.1; done

echo "baseline: loadgen -> erp-sim directly, $max_conc connections, ${latency} ms latency"
./build/release/bench/dvrouter-loadgen --url "http://127.0.0.1:$simport/api/orders" \
  --body tests/fixtures/dataverse/update-msdyn_agentstatus-postop-async.json \
  -H "Idempotency-Key: baseline" --connections "$(( max_conc > 512 ? 512 : max_conc ))" \
  --duration "$duration" --json "$work/base.json" | grep requests
base_rate=$(python3 -c "import json; print(round(json.load(open('$work/base.json'))['ok_rate']))")

# One dvrouter run: closed loop for $duration s, then wait until the ERP has every order.
# $1: "plain", or "writeback" (a dataverse adapter reports the ERP's statuses to the Dataverse
# simulator: every order adds status records to the journal and PATCHes to the write-back).
run_router() {
  local mode=$1
  # A fresh simulator: the load generator's event ids repeat between runs, and the simulator
  # would answer a second run's calls from its idempotency map.
  stop_pid "$sim_pid"
  simport=$(free_port)
  ./build/release/tests/dvrouter-erp-sim --listen "127.0.0.1:$simport" --latency-ms "$latency" \
    2>"$work/sim-$mode.log" &
  sim_pid=$!
  pids+=($sim_pid)
  for _ in $(seq 100); do curl -sf "127.0.0.1:$simport/_stats" >/dev/null && break; sleep 0.1; done
  port=$(free_port); admin=$(free_port)
  local extra="" guard=""
  if [ "$mode" = writeback ]; then
    guard=$'loop_guard:\n  user_ids: [9f3c1d2e-0000-4000-8000-00000000a001]'
    extra="  crm:
    type: dataverse
    source: erp
    url: http://127.0.0.1:$dvport
    auth: {token_url: 'http://127.0.0.1:$dvport/t/oauth2/v2.0/token', client_id: dvrouter, client_secret: '\${DVROUTER_BENCH_DV_SECRET}'}
    status_column: new_integrationstatus
    status_values: {submitted: 1, completed: 3, failed: 4}
    answer_columns: {new_erpordernumber: order_number}
    max_concurrency: 52
    max_requests_per_second: 100"
  fi
  rm -rf "$work/data"
  cat > "$work/router.yaml" <<YAML
ingress:
  listen: 127.0.0.1:$port
  max_connections: 4096
  auth: {mode: none}
admin:
  listen: 127.0.0.1:$admin
journal:
  data_dir: $work/data
  disk_budget_bytes: 64GiB
$guard
adapters:
  erp:
    type: erp
    base_url: http://127.0.0.1:$simport
    concurrency: {max: $max_conc, adaptive: true}
    max_in_flight: 64
    batch: {max_events: 200, linger: 5ms}
    requests:
      - path: /api/orders
        body: '{"crm_id": {{header.row_id}}, "seq": {{event.seq}}, "capacity": {{target.msdyn_availableunitscapacity}}}'
        capture: {order_number: /orderNumber}
$extra
routes:
  - adapters: [erp]
YAML
  DVROUTER_BENCH_DV_SECRET=bench ./build/release/dvrouter serve -c "$work/router.yaml" \
    2>"$work/router-$mode.log" &
  local router_pid=$!
  pids+=($router_pid)
  for _ in $(seq 100); do curl -sf "127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
  local before dups_before start end created acked limit
  before=$(stat created)
  dups_before=$(stat duplicates)
  start=$(date +%s.%N)
  echo "dvrouter -> erp ($mode): loadgen closed loop for ${duration}s, 64 connections"
  ./build/release/bench/dvrouter-loadgen --url "http://127.0.0.1:$port/webhooks/dataverse" \
    --body tests/fixtures/dataverse/update-msdyn_agentstatus-postop-async.json \
    --records 100000 --connections 64 --duration "$duration" --json "$work/load.json" | grep requests
  acked=$(python3 -c "import json; print(json.load(open('$work/load.json'))['ok'])")
  for _ in $(seq 1200); do
    [ "$(( $(stat created) - before ))" -ge "$acked" ] && break
    sleep 0.1
  done
  end=$(date +%s.%N)
  created=$(( $(stat created) - before ))
  limit=$(curl -s "127.0.0.1:$admin/metrics" | awk '/^dvrouter_erp_concurrency_limit/{print $2}')
  local written=0 records=0
  if [ "$mode" = writeback ]; then
    written=$(curl -s "127.0.0.1:$admin/metrics" |
      awk '/^dvrouter_dataverse_writes_total.*result="(written|not_found)"/{n+=$2} END{print n+0}')
    records=$(curl -s "127.0.0.1:$admin/metrics" |
      awk '/^dvrouter_status_records_total.*result="appended"/{print $2}')
  fi
  python3 - "$mode" "$acked" "$created" "$start" "$end" "$base_rate" "$limit" \
    "$(stat order_violations)" "$(( $(stat duplicates) - dups_before ))" "$written" "$records" <<'PY'
import sys
mode, acked, created, start, end, base, limit, violations, dups, written, records = sys.argv[1:]
rate = int(created) / (float(end) - float(start))
print(f"[{mode}] acknowledged {acked}, orders created {created}, delivered {rate:.0f} events/s "
      f"(first post to last order), baseline {base} req/s ({rate / float(base):.2f}x), "
      f"adaptive limit at the end {float(limit):.0f}, order violations {violations}, "
      f"duplicates {dups}")
if mode == "writeback":
    print(f"[{mode}] status records journaled {float(records):.0f}, PATCHes answered by then "
          f"{float(written):.0f} (rows unknown to the simulator: 404; paced at 100/s, while "
          f"Dataverse allows ~20/s per application user)")
PY
  stop_pid "$router_pid"
}

run_router plain
if [ "${WRITEBACK:-1}" = 1 ]; then
  cmake --build --preset release --target dvrouter-dataverse-sim >/dev/null
  dvport=$(free_port)
  ./build/release/tests/dvrouter-dataverse-sim --listen "127.0.0.1:$dvport" \
    --client dvrouter:bench 2>"$work/dv.log" &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "127.0.0.1:$dvport/_stats" >/dev/null && break; sleep 0.1; done
  run_router writeback
fi
