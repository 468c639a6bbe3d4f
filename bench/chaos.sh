#!/usr/bin/env bash
# The chaos run (docs/testing.md, "Chaos run"): dvrouter with every sink, the Dataverse and ERP
# simulators, PostgreSQL and ClickHouse on loopback; load throughout; a fault schedule drawn
# from a seed; then a quiet phase until every sink and every CRM row converged (or a deadline),
# and one table of checks. Exit status 0 only when every check holds.
#
#   bench/chaos.sh [MINUTES]        # chaos phase length, default 30 (fractions allowed)
#
# Environment:
#   SEED=N          replay a run: the same seed draws the same fault schedule and load
#   SECONDS_OVERRIDE=S  chaos phase in seconds (short runs), instead of MINUTES
#   RATE=N          changes per second posted to the Dataverse simulator (default 500)
#   FAULT_GAP="MIN MAX"  seconds between two faults (default "10 60")
#   QUIET_MAX=S     deadline of the quiet phase (default 600)
#   RESULTS=DIR     where chaos-<date>.md goes (default bench/results); RESULTS=none: nowhere
#   NO_BUILD=1      use the release build as it is
#   KEEP_WORK=1     keep the work directory (logs, journal, databases) after the run
#   BUILD_DIR=DIR   the build to run (default build/release; the ctest passes its own)
# Exit status 77 (skipped) when PostgreSQL or ClickHouse is not installed.
#
# Only loopback traffic; every process started is stopped on exit (by PID, also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${BUILD_DIR:-$root/build/release}

minutes=${1:-30}
seed=${SEED:-$(( $(date +%s) % 1000000 ))}
rate=${RATE:-500}
gap=${FAULT_GAP:-10 60}
quiet_max=${QUIET_MAX:-600}
results=${RESULTS:-$root/bench/results}

if [ -n "${SECONDS_OVERRIDE:-}" ]; then
  chaos_seconds=$SECONDS_OVERRIDE
else
  chaos_seconds=$(python3 -c "import sys; print(float(sys.argv[1]) * 60)" "$minutes")
fi

# Builds the router, the simulators (targets of the release preset).
build_release() {
  if [ "${NO_BUILD:-0}" = 1 ]; then return; fi
  cmake --preset release >/dev/null
  cmake --build --preset release --target dvrouter dvrouter-erp-sim dvrouter-dataverse-sim \
    >/dev/null
}

# PostgreSQL and ClickHouse from the Debian packages (scripts/install-deps.sh installs both).
require_servers() {
  if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    echo "chaos run skipped: no PostgreSQL (Debian package postgresql)"
    exit 77
  fi
  if [ ! -x /usr/sbin/clickhouse-server ] && [ ! -x /usr/bin/clickhouse-server ]; then
    echo "chaos run skipped: no clickhouse-server (Debian package clickhouse-server)"
    exit 77
  fi
}
require_servers

work=$(mktemp -d /tmp/dvrouter-chaos-XXXXXX)
chmod 755 "$work"   # PostgreSQL runs as its own user below it
driver_pid=""

# Stops the driver, then whatever it started that is still running (PIDs from $work/pids).
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local pid
  if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
    kill "$driver_pid" 2>/dev/null || true
    wait "$driver_pid" 2>/dev/null || true
  fi
  if [ -f "$work/pids" ]; then
    while read -r pid; do
      kill -9 "$pid" 2>/dev/null || true
    done < "$work/pids"
  fi
  if [ "${KEEP_WORK:-0}" = 1 ]; then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)   # what was built and run
echo "chaos run: seed $seed (replay with SEED=$seed), chaos phase ${chaos_seconds} s"

# The driver runs in the background so that the traps above stay responsive.
replay="SEED=$seed RATE=$rate FAULT_GAP=\"$gap\" bench/chaos.sh $minutes"
[ -z "${SECONDS_OVERRIDE:-}" ] || replay="SECONDS_OVERRIDE=$SECONDS_OVERRIDE $replay"
# shellcheck disable=SC2086  # FAULT_GAP is two numbers
python3 "$root/bench/chaos.py" --seconds "$chaos_seconds" --replay "$replay" \
  --seed "$seed" --rate "$rate" --gap $gap --quiet-max "$quiet_max" \
  --work "$work" --build "$build" --summary "$work/summary.md" &
driver_pid=$!
status=0
wait "$driver_pid" || status=$?
driver_pid=""

# The results file: the driver's summary, the machine and the verdict.
if [ "$results" != none ] && [ -f "$work/summary.md" ]; then
  mkdir -p "$results"
  out="$results/chaos-$(date -u +%Y-%m-%dT%H%M).md"
  {
    echo "# Chaos run $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- Result: $([ "$status" = 0 ] && echo "every check holds" || echo "**FAILED**")"
    echo "- Machine: $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)," \
      "$(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM," \
      "commit $commit"
    cat "$work/summary.md"
  } > "$out"
  echo "results: $out"
fi
exit "$status"
