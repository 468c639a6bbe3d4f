#!/usr/bin/env bash
# Runs the standard end-to-end scenarios on this machine and writes a results table to
# bench/results/<date>-<host>.md (also printed):
#   (a) ingest only, fsync on: maximum events/s (closed loop), then ack latency at 50% of it
#       (open loop, latency from each request's due time);
#   (b) the same load against nginx answering 200 (one worker), the HTTP ceiling, and the ratio;
#   (c) ingest delivered to every adapter present at a sustained open-loop rate (RATE_C, default
#       15000/s): the lake, a local PostgreSQL and a local ClickHouse (each when its server package
#       is installed; both started here on loopback). Zero loss is checked by counting at each
#       sink against the journal; delivery lag per event for the lake (file finalization minus
#       received time), and for every adapter the engine's lag gauge sampled every 100 ms.
# Everything listens on 127.0.0.1 and is stopped on exit. DURATION (s) and CONNECTIONS tune it;
# RECORD_CACHE_BYTES sets (c)'s delivery.record_cache_bytes (0: the adapters read the journal);
# SCENARIOS picks a subset (default "a b c"; the ratio needs a and b); PROFILE=1 records a
# `perf record -g` (PERF_FLAGS replaces -g, e.g. "--call-graph dwarf") of the router during each
# measured load into bench/results/perf-<run>.data; DVROUTER_BIN names another router binary
# to measure (A/B within one session). HOT_SHARE (default 0.1) is the share of events on 100 hot
# records; CH_LINGER (default 500ms) is ClickHouse's batch linger in (c): with a 2 s lag target,
# its default 1s would take half of it; LAKE_ROLL (default 1s) is the lake's roll_interval in (c),
# which bounds the lake's lag from below. COMPRESSION (zstd, the default, or none) sets
# journal.compression in (a) and (c); (a) reports the journal bytes written per body byte.
# CH_COMPRESSION (default none: ClickHouse is on loopback here) is the clickhouse adapter's
# `compression` in (c). (c) also reports the router's CPU per event by thread kind. DURABILITY
# (fsync, the default, or unsafe_no_fsync) is journal.durability in (a), which also reports the
# router's CPU per acknowledged event and the events per journal write (group size). IO_THREADS
# (default 4) is ingress.io_threads in (a) and (c). DICTIONARIES: below.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
duration=${DURATION:-10}
# (a) and (b) take the best closed-loop rate over these connection counts; (c) uses C_CONNECTIONS.
connections=${CONNECTIONS:-32 64 128}
c_connections=${C_CONNECTIONS:-128}
scenarios=" ${SCENARIOS:-a b c} "
want() { [[ "$scenarios" == *" $1 "* ]]; }
profile=${PROFILE:-0}
# DVROUTER_BIN runs another build of the router (an A/B against an older commit's binary).
router_bin=${DVROUTER_BIN:-./build/release/dvrouter}
compression=${COMPRESSION:-zstd}
# DICTIONARIES (true or false) sets journal.compression_dictionaries in (a) and (c); unset, the
# router's default (and a binary that predates the key still starts).
journal_extra=""
[ -z "${DICTIONARIES:-}" ] || journal_extra=$'\n'"  compression_dictionaries: $DICTIONARIES"
# GROUP_WINDOW (e.g. 1ms) and GROUP_WINDOW_EVENTS (e.g. 16) set journal.group_window and
# journal.group_window_events in (a) and (c) the same way.
[ -z "${GROUP_WINDOW:-}" ] || journal_extra+=$'\n'"  group_window: $GROUP_WINDOW"
[ -z "${GROUP_WINDOW_EVENTS:-}" ] || journal_extra+=$'\n'"  group_window_events: $GROUP_WINDOW_EVENTS"
# PREALLOCATE (true or false) sets journal.preallocate in (a) and (c) the same way.
[ -z "${PREALLOCATE:-}" ] || journal_extra+=$'\n'"  preallocate: $PREALLOCATE"
durability=${DURABILITY:-fsync}

./scripts/install-deps.sh
if ! command -v nginx >/dev/null 2>&1; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nginx-light
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cmake --preset release >/dev/null
cmake --build --preset release --target dvrouter dvrouter-loadgen >/dev/null

# shellcheck source=bench/bench_lib.sh
source bench/bench_lib.sh
fixtures=tests/fixtures/dataverse
bodies=(--body $fixtures/update-msdyn_agentstatus-postop-async.json
        --body $fixtures/create-msdyn_agentstatus-postop-sync.json
        --body $fixtures/update-contact-postop-async.json)
loadgen() { ./build/release/bench/dvrouter-loadgen "${bodies[@]}" --records 100000 --hot-share "${HOT_SHARE:-0.1}" \
              --hot-records 100 --duration "$duration" "$@"; }
# Closed loop at each connection count; leaves the best run in $work/$1.json and its rate and
# connections in best_rate / best_conn, and every rate in sweep_line.
sweep() {
  local name=$1 url=$2 seed=$3 c r
  best_rate=0; best_conn=0; sweep_line=""
  for c in $connections; do
    echo "  $name: closed loop, $c connections, ${duration}s"
    loadgen --url "$url" --connections "$c" --json "$work/$name-$c.json" --seed $((seed + c))
    r=$(json_field "$work/$name-$c.json" "['ok_rate']")
    sweep_line+="${sweep_line:+, }$c connections $(printf '%.0f' "$r")/s"
    if python3 -c "import sys; sys.exit(0 if $r > $best_rate else 1)"; then best_rate=$r; best_conn=$c; fi
  done
  cp "$work/$name-$best_conn.json" "$work/$name.json"
}
json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

# Runs "$@" while perf records the process $2 (when PROFILE=1) into bench/results/perf-$1.data.
profiled() {
  local name=$1 pid=$2 perf_pid=""
  shift 2
  if [ "$profile" = 1 ]; then
    mkdir -p bench/results
    # shellcheck disable=SC2086  # PERF_FLAGS is a list of options
    perf record -q ${PERF_FLAGS:--g} -p "$pid" -o "bench/results/perf-$name.data" 2>/dev/null &
    perf_pid=$!
  fi
  "$@"
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
}
[ "$profile" != 1 ] || command -v perf >/dev/null || { echo "PROFILE=1 needs perf (linux-perf)" >&2; exit 1; }

a_sweep="not run"; b_sweep="not run"; a_conn="-"; b_conn="-"; group="n/a"; slow_syncs="n/a"; journal_ratio=
a_cpu="n/a"; a_per_write="n/a"
if want a; then
# (a) dvrouter, default durability.
port=$(free_port); admin=$(free_port)
cat > "$work/router.yaml" <<YAML
ingress:
  listen: 127.0.0.1:$port
  io_threads: ${IO_THREADS:-4}
  max_connections: 4096
  auth:
    mode: webhook_key
    secret: \${DVROUTER_BENCH_KEY}
admin:
  listen: 127.0.0.1:$admin
journal:
  data_dir: $work/data
  disk_budget_bytes: 64GiB
  compression: $compression$journal_extra
  durability: $durability
adapters: {}   # ingest only
YAML
DVROUTER_BENCH_KEY=bench "$router_bin" serve -c "$work/router.yaml" 2>"$work/router.log" &
a_pid=$!
pids+=($a_pid)
for _ in $(seq 100); do curl -sf "127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port/webhooks/dataverse?code=bench"

echo "(a) dvrouter, closed loop over connections: $connections"
sweep a-max "$url" 1000
max_rate=$best_rate; a_conn=$best_conn; a_sweep=$sweep_line
half=$(python3 -c "print(int($max_rate/2))")
echo "(a) dvrouter open loop at $half/s, $a_conn connections"
profiled a-half "$a_pid" \
  loadgen --url "$url" --connections "$a_conn" --rate "$half" --json "$work/a-half.json" --seed 2
metrics=$(curl -s "127.0.0.1:$admin/metrics")
group=$(awk '/^dvrouter_journal_group_commit_events_sum/{s=$2} /^dvrouter_journal_group_commit_events_count/{c=$2} END{if(c>0) printf "%.1f", s/c}' <<<"$metrics")
# fdatasync calls slower than 100 ms over both dvrouter runs: disk stalls show here.
slow_syncs=$(awk '/^dvrouter_journal_fsync_duration_seconds_bucket\{le="0.1"\}/{b=$2} /^dvrouter_journal_fsync_duration_seconds_count/{c=$2} END{printf "%d of %d", c-b, c}' <<<"$metrics")
# Journal bytes written per webhook body byte received (frames, headers and all).
journal_ratio=$(awk '/^dvrouter_journal_written_bytes_total /{j=$2} /^dvrouter_received_bytes_total /{r=$2} END{if(r>0) printf "%.3f", j/r}' <<<"$metrics")
echo "(a) journal.compression $compression: $journal_ratio journal bytes per body byte"
# Over the whole of (a), sweep and half load: the router's CPU (user + system) per event
# journaled, and events per journal write (one pwritev per group, fsync or not).
a_cpu=$(awk -v hz="$(getconf CLK_TCK)" -v n="$(awk '/^dvrouter_requests_total\{outcome="accepted"\}/{print $2}' <<<"$metrics")" \
  '{if (n > 0) printf "%.1f", ($14 + $15) / hz / n * 1e6}' "/proc/$a_pid/stat")
a_per_write=$(awk '/^dvrouter_requests_total\{outcome="accepted"\}/{n=$2} /^dvrouter_journal_append_duration_seconds_count/{w=$2} END{if(w>0) printf "%.1f", n/w}' <<<"$metrics")
echo "(a) journal.durability $durability: router CPU $a_cpu µs per event, $a_per_write events per journal write"
stop_pid "$a_pid"
fi

if want b; then
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
echo "(b) nginx, closed loop over connections: $connections"
sweep b-nginx "http://127.0.0.1:$nport/webhooks/dataverse" 2000
nginx_rate=$best_rate; b_conn=$best_conn; b_sweep=$sweep_line
fi

c_summary="not run"; sinks_summary="not run"; sinks="none"
if want c; then
# (c) the same ingest with delivery to every sink present, at a sustained rate.
rate_c=${RATE_C:-15000}
cport=$(free_port); cadmin=$(free_port)
sinks="lake"
extra_adapters=""
# PostgreSQL: initdb into a temp dir, run as the postgres user when we are root.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$pg_bin" ] && [ -x "$pg_bin/postgres" ]; then
  pgdir=$(mktemp -d /tmp/dvrouter-bench-pg-XXXXXX)
  cleanup_dirs+=("$pgdir")
  as_pg=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$pgdir"
    as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
  fi
  pgport=$(free_port)
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pgdir/data" -U dvrouter --auth=trust -E UTF8 --no-locale \
    --no-sync >"$work/initdb.log" 2>&1
  "${as_pg[@]}" "$pg_bin/postgres" -D "$pgdir/data" -p "$pgport" -k "$pgdir" \
    -c listen_addresses=127.0.0.1 >"$work/postgres.log" 2>&1 &
  pg_pid=$!
  pids+=($pg_pid)
  for _ in $(seq 100); do
    psql -h 127.0.0.1 -p "$pgport" -U dvrouter -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.1
  done
  psql -h 127.0.0.1 -p "$pgport" -U dvrouter -d postgres -qc 'CREATE DATABASE dvrouter'
  sinks="$sinks pg"
  extra_adapters+="
  pg:
    type: postgres
    host: 127.0.0.1
    port: $pgport
    sslmode: disable
    pool_size: 4
    max_in_flight: 8"
fi
# ClickHouse: a minimal configuration in a temp dir.
ch_bin=$(command -v clickhouse-server || ls /usr/sbin/clickhouse-server 2>/dev/null || true)
if [ -n "$ch_bin" ]; then
  chdir="$work/ch"; mkdir -p "$chdir"
  chport=$(free_port); chtcp=$(free_port)
  cat > "$chdir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>$chport</http_port><tcp_port>$chtcp</tcp_port><listen_host>127.0.0.1</listen_host>
  <path>$chdir/data/</path><tmp_path>$chdir/tmp/</tmp_path>
  <user_files_path>$chdir/user_files/</user_files_path>
  <format_schema_path>$chdir/format_schemas/</format_schema_path>
  <mark_cache_size>5368709</mark_cache_size>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile><default_database>default</default_database>
</yandex>
XML
  cat > "$chdir/users.xml" <<XML
<?xml version="1.0"?>
<yandex><profiles><default></default></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip></networks>
<profile>default</profile><quota>default</quota></default></users>
<quotas><default></default></quotas></yandex>
XML
  "$ch_bin" --config-file="$chdir/config.xml" >"$work/clickhouse.log" 2>&1 &
  ch_pid=$!
  pids+=($ch_pid)
  for _ in $(seq 200); do curl -sf "127.0.0.1:$chport/ping" >/dev/null && break; sleep 0.1; done
  sinks="$sinks ch"
  extra_adapters+="
  ch:
    type: clickhouse
    url: http://127.0.0.1:$chport
    compression: ${CH_COMPRESSION:-none}
    batch: {linger: ${CH_LINGER:-500ms}}"
fi
route_list=$(echo "$sinks" | sed 's/ /, /g')
cat > "$work/router-c.yaml" <<YAML
ingress:
  listen: 127.0.0.1:$cport
  io_threads: ${IO_THREADS:-4}
  max_connections: 4096
  auth:
    mode: webhook_key
    secret: \${DVROUTER_BENCH_KEY}
admin:
  listen: 127.0.0.1:$cadmin
journal:
  data_dir: $work/data-c
  disk_budget_bytes: 64GiB
  compression: $compression$journal_extra
delivery:
  record_cache_bytes: ${RECORD_CACHE_BYTES:-512MiB}
adapters:
  lake:
    type: lake
    roll_interval: ${LAKE_ROLL:-1s}
    batch: {max_events: 500, linger: 20ms}
    max_in_flight: 64$extra_adapters
routes:
  - adapters: [$route_list]
YAML
DVROUTER_BENCH_KEY=bench "$router_bin" serve -c "$work/router-c.yaml" 2>"$work/router-c.log" &
c_pid=$!
pids+=($c_pid)
for _ in $(seq 100); do curl -sf "127.0.0.1:$cadmin/readyz" >/dev/null && break; sleep 0.1; done
echo "(c) ingest + $sinks, open loop at $rate_c/s, $c_connections connections"
# The engine's lag gauges, sampled every 100 ms while the load runs and until every sink is
# caught up (bounded: 60 s after the load; what is not delivered by then is reported as such,
# it stays in the journal).
python3 bench/sample_gauges.py "127.0.0.1:$cadmin" 0.1 dvrouter_delivery_lag_seconds \
  dvrouter_delivery_lag_events dvrouter_delivery_record_cache_bytes > "$work/lag-samples.txt" &
sampler=$!
pids+=($sampler)  # stopped with the servers if the run ends early
# The whole machine's busy time (every process: the router, PostgreSQL, ClickHouse, the load
# generator) over the same span as the router's delivery, from /proc/stat: what the two cores
# have to carry per event.
machine_busy() { awk '/^cpu /{printf "%.0f\n", $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# The CPUs that /proc/stat's total covers (all of the host's, whatever this shell's affinity).
machine_cpus() { grep -c '^cpu[0-9]' /proc/stat; }
# A process's CPU (user + system, clock ticks) with that of its children (PostgreSQL's backends):
# the living ones', and the ended ones' it has waited for (its cutime and cstime); 0 for none.
tree_cpu() {
  [ -n "${1:-}" ] || { echo 0; return; }
  # (A process that ends meanwhile fails cat: its file is gone.)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v p="$1" '
    { pid = $1; sub(/^.*\) /, "") }  # then ppid is $2, utime $12, stime $13, cutime $14, cstime $15
    pid == p {s += $12 + $13 + $14 + $15}
    $2 == p {s += $12 + $13}
    END {printf "%.0f\n", s}'
}
c_busy0=$(machine_busy)
c_router0=$(awk '{print $14 + $15}' "/proc/$c_pid/stat")
c_pg0=$(tree_cpu "${pg_pid:-}"); c_ch0=$(tree_cpu "${ch_pid:-}")
profiled c "$c_pid" \
  loadgen --url "http://127.0.0.1:$cport/webhooks/dataverse?code=bench" --rate "$rate_c" \
  --connections "$c_connections" --json "$work/c-lake.json" --seed 4
for _ in $(seq 600); do
  behind=$(curl -s "127.0.0.1:$cadmin/metrics" |
           awk '/^dvrouter_delivery_lag_events\{/{s += $2} END {print s + 0}')
  [ "$behind" = "0" ] && break
  sleep 0.1
done
c_busy1=$(machine_busy)
c_router1=$(awk '{print $14 + $15}' "/proc/$c_pid/stat")
c_pg1=$(tree_cpu "${pg_pid:-}"); c_ch1=$(tree_cpu "${ch_pid:-}")
stop_pid "$sampler"
# The router's CPU (user + system) for the whole scenario: ingest and delivery of every event.
c_cpu=$(awk -v t="$c_router1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}')
# Peak resident memory; minor page faults (the whole process) and context switches (threads
# alive at the end).
c_rss=$(awk '/^VmHWM:/{printf "%.0f", $2 / 1024}' "/proc/$c_pid/status")
c_faults=$(awk '{print $10}' "/proc/$c_pid/stat")
# (A thread that ends meanwhile is skipped: its file is gone.)
c_switches=$({ cat /proc/"$c_pid"/task/*/status 2>/dev/null || true; } |
  awk '/^(non)?voluntary_ctxt_switches/{s += $2} END {print s + 0}')
# The CPU by thread kind (dv-io-N -> dv-io): where it went. Threads that ended earlier are
# in the total only.
c_threads=$(for t in /proc/"$c_pid"/task/*; do
    echo "$(sed 's/-[0-9]*$//' "$t/comm" 2>/dev/null) $(cut -d')' -f2- "$t/stat" 2>/dev/null | awk '{print $12 + $13}')"
  done | awk -v hz="$(getconf CLK_TCK)" 'NF == 2 {s[$1] += $2} END {for (k in s) printf "%s %.2f\n", k, s[k] / hz}')
# How many batch records came from the record cache instead of a journal read.
c_cache=$(curl -s "127.0.0.1:$cadmin/metrics" | awk '
  /^dvrouter_delivery_batch_records_total\{source="cache"\}/{c=$2}
  /^dvrouter_delivery_batch_records_total\{source="journal"\}/{j=$2}
  /^dvrouter_journal_tail_reads_total /{t=$2}
  /^dvrouter_journal_group_commit_events_sum/{gs=$2}
  /^dvrouter_journal_group_commit_events_count/{gc=$2}
  END{printf "%d of %d (%.0f%%); journal reads from the read tail: %d; events per group commit: %.1f", c, c+j, (c+j>0) ? 100*c/(c+j) : 0, t, (gc>0) ? gs/gc : 0}')
# Zero loss at the database sinks: every journal record is in ClickHouse once (by event id),
# and every PostgreSQL row carries the newest seq of its record.
./build/release/dvrouter journal --data-dir "$work/data-c" > "$work/journal-c.jsonl"
if [ -n "${pgport:-}" ]; then
  psql -h 127.0.0.1 -p "$pgport" -U dvrouter -d dvrouter -Atc \
    "SELECT 'msdyn_agentstatus', id, version FROM crm_msdyn_agentstatus UNION ALL SELECT 'contact', id, version FROM crm_contact" \
    -F ' ' > "$work/pg-rows.txt"
fi
if [ -n "${chport:-}" ]; then
  curl -s "127.0.0.1:$chport/" --data-binary \
    "SELECT count(), uniqExact(event_id) FROM dvrouter_events FORMAT TabSeparated" > "$work/ch-count.txt"
fi
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
sinks_summary=$(python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
journal = [json.loads(l) for l in open(f"{work}/journal-c.jsonl")]
out = []
newest = {}
for r in journal:
    key = (r["table"], r["row_id"])
    newest[key] = max(newest.get(key, 0), r["seq"])
if os.path.exists(f"{work}/pg-rows.txt"):
    rows = {}
    for line in open(f"{work}/pg-rows.txt"):
        t, i, v = line.split()
        rows[(t, i)] = int(v)
    missing = sum(1 for k, v in newest.items() if rows.get(k) != v)
    out.append(f"postgres: {len(rows)} rows for {len(newest)} records, "
               f"{missing} not at their newest event when the wait ended")
if os.path.exists(f"{work}/ch-count.txt"):
    total, distinct = map(int, open(f"{work}/ch-count.txt").read().split())
    out.append(f"clickhouse: {distinct} distinct events of {len(journal)} journaled "
               f"({len(journal) - distinct} not there when the wait ended, "
               f"{total - distinct} redelivered rows)")
lag = {}
cache = [0.0]
for line in open(f"{work}/lag-samples.txt"):
    parts = line.split()
    if len(parts) == 3 and parts[1] == "dvrouter_delivery_record_cache_bytes":
        cache.append(float(parts[2]))
    if len(parts) == 3 and parts[1].startswith("dvrouter_delivery_lag_seconds"):
        lag.setdefault(parts[1].split('"')[1], []).append(float(parts[2]))
for name, v in sorted(lag.items()):
    v.sort()
    out.append(f"{name} lag gauge p50 {v[len(v) // 2]:.2f}s, p99 "
               f"{v[min(len(v) - 1, int(0.99 * len(v)))]:.2f}s, max {v[-1]:.2f}s")
out.append(f"record cache peak {max(cache) / 2**20:.0f} MiB")
print("; ".join(out))
PY
)
echo "(c) $sinks_summary"
echo "(c) batch records from the record cache: $c_cache"
fi

mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%d)-$(hostname -s).md"
{
  echo "# bench/run.sh results, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)."
  echo "Load generator on the same machine (epoll, one thread): ${duration}s per run, bodies 7.8-13.5 KB (mean ~10.4 KB)."
  echo "(a) closed loop: $a_sweep; best $a_conn connections (its 50% run uses them too)."
  echo "(b) closed loop: $b_sweep; best $b_conn connections. (c): $c_connections connections."
  echo
  echo "| scenario | 2xx/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | non-2xx |"
  echo "|---|---|---|---|---|---|---|---|"
  for f in a-max a-half b-nginx c-lake; do
    [ -f "$work/$f.json" ] || continue
    python3 - "$work/$f.json" "$f" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency_ms"]
name = {"a-max": "(a) dvrouter, fsync, closed loop (max)",
        "a-half": "(a) dvrouter, fsync, open loop at 50% of max",
        "b-nginx": "(b) nginx return 200, closed loop",
        "c-lake": "(c) dvrouter + delivery to every sink, open loop"}[sys.argv[2]]
bad = r["requests"] - r["ok"]
print(f"| {name} | {r['ok_rate']:.0f} | {l['p50']:.2f} | {l['p90']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {l['max']:.2f} | {bad} |")
PY
  done
  echo
  if want a && want b; then
    echo "dvrouter / nginx throughput ratio: $(python3 -c "print(f'{$max_rate/$nginx_rate:.2f}')")"
  fi
  echo "Mean events per group commit (fdatasync) over the dvrouter runs: $group"
  echo "journal.durability $durability in (a): router CPU ${a_cpu} µs per journaled event, ${a_per_write} events per journal write"
  echo "fdatasync calls slower than 100 ms over the dvrouter runs: $slow_syncs"
  echo "journal.compression $compression: ${journal_ratio:-n/a} journal bytes written per body byte in (a)"
  echo "(c) sinks: $sinks. Lake (roll_interval ${LAKE_ROLL:-1s}): $c_summary"
  echo "(c) $sinks_summary"
  echo "(c) batch records from the record cache (RECORD_CACHE_BYTES ${RECORD_CACHE_BYTES:-512MiB}): ${c_cache:-n/a}"
  if [ -n "${c_cpu:-}" ]; then
    c_events=$(json_field "$work/c-lake.json" "['ok']")
    echo "(c) router CPU (user + system) until every sink had every event: ${c_cpu} s for $c_events events, $(python3 -c "print(f'{$c_cpu * 1e6 / max($c_events, 1):.0f}')") µs per event"
    echo "(c) router peak RSS ${c_rss} MiB; minor page faults per event $(python3 -c "print(f'{$c_faults / max($c_events, 1):.2f}')"), context switches per event $(python3 -c "print(f'{$c_switches / max($c_events, 1):.2f}')")"
    echo "(c) router CPU per event by thread: $(sort -k2 -rn <<<"$c_threads" |
      awk -v n="$c_events" '$2 > 0 {printf "%s%s %.1f", sep, $1, $2 * 1e6 / n; sep = ", "}') µs"
    echo "(c) machine CPU (all processes, user + system) from the load's start until every sink had every event: $(python3 -c "
hz = $(getconf CLK_TCK); n = max($c_events, 1); cores = $(machine_cpus)
busy = ($c_busy1 - $c_busy0) / hz; router = ($c_router1 - $c_router0) / hz
pg = ($c_pg1 - $c_pg0) / hz; ch = ($c_ch1 - $c_ch0) / hz; rest = busy - router - pg - ch
print(f'{busy * 1e6 / n:.0f} µs per event: the router {router * 1e6 / n:.0f}, PostgreSQL '
      f'{pg * 1e6 / n:.0f}, ClickHouse {ch * 1e6 / n:.0f}, the rest (load generator, kernel, '
      f'sampler, any other process) {rest * 1e6 / n:.0f}; at that cost the {cores} cores carry '
      f'at most {cores * n / max(busy, 1e-9):.0f} events/s')")"
  fi
} > "$out"
cat "$out"
