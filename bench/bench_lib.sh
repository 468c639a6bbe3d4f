# shellcheck shell=bash
# Sourced by the bench scripts (run.sh, erp.sh, cluster.sh) from the project root: a temp dir
# ($work, removed on exit with the dirs in cleanup_dirs), the processes they start (pids: killed
# and waited for on exit), and free loopback ports.

work=$(mktemp -d)
pids=()
cleanup_dirs=()
cleanup() {
  for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
  for pid in ${pids[@]+"${pids[@]}"}; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work" ${cleanup_dirs[@]+"${cleanup_dirs[@]}"}
}
trap cleanup EXIT

# Stops one of $pids now and forgets it, so the exit's clean-up never signals its number again
# (by then the system may have given it to another process).
stop_pid() {
  local pid=$1 kept=() p
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in ${pids[@]+"${pids[@]}"}; do [ "$p" = "$pid" ] || kept+=("$p"); done
  pids=(${kept[@]+"${kept[@]}"})
}

# A loopback port nothing listens on, never one this run handed out before (the kernel may give
# a port just released to the next bind, and two servers told the same port make a run that
# measures the wrong one, or none), and outside the ephemeral range, where an outgoing
# connection could take it before the server binds it (bench/ports.py). $work/ports remembers
# them across the $(...) subshells.
free_port() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/ports.py" "$work/ports"
}
