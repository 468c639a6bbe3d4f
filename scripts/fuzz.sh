#!/usr/bin/env bash
# Builds the libFuzzer harnesses (the `fuzz` preset: clang, ASan+UBSan) and runs each one.
#   scripts/fuzz.sh [SECONDS]   each harness for SECONDS (default 60), new inputs kept in
#                               build/fuzz/corpus/<harness>, crashes in build/fuzz/artifacts
#   scripts/fuzz.sh --smoke     what the test command runs: the committed corpus, then a fixed
#                               number of mutations from a fixed seed (deterministic, ~1 min)
# A crash found is a finding: fix it, and add the input to tests/fuzz/corpus/<harness>/ as a
# regression (docs/testing.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
seconds=60
case "${1:-}" in
  --smoke) smoke=1 ;;
  "") ;;
  *) seconds=$1 ;;
esac

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target dvrouter_fuzzers

# harness -> its seed directories (committed; never written to)
declare -A seeds=(
  [decode]="tests/fixtures/dataverse tests/fuzz/corpus/decode"
  [encoders]="tests/fixtures/dataverse tests/fuzz/corpus/encoders"
  [frame]="tests/fuzz/corpus/frame"
  [files]="tests/fuzz/corpus/files"
  [parsers]="tests/fuzz/corpus/parsers"
)
# Mutations per harness in --smoke (the frame harness writes files on each input: fewer).
declare -A smoke_runs=([decode]=200000 [encoders]=100000 [frame]=10000 [files]=50000 [parsers]=100000)

mkdir -p build/fuzz/artifacts
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for name in decode encoders frame files parsers; do
  bin=build/fuzz/tests/fuzz/fuzz_$name
  if [ "$smoke" -eq 1 ]; then
    out=$(mktemp -d)  # new inputs of a smoke run are not kept
    flags=(-seed=1 -runs="${smoke_runs[$name]}")
  else
    out=build/fuzz/corpus/$name
    mkdir -p "$out"
    flags=(-max_total_time="$seconds" -print_final_stats=1)
  fi
  echo "=== fuzz_$name"
  log=build/fuzz/fuzz_$name.log
  status=0
  # shellcheck disable=SC2086
  "$bin" "${flags[@]}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix=build/fuzz/artifacts/"$name"- "$out" ${seeds[$name]} >"$log" 2>&1 || status=$?
  grep -E '^(#[0-9]+ +(INITED|DONE)|Done|stat::|==[0-9]+==ERROR|SUMMARY|invariant)' "$log" || true
  if [ "$smoke" -eq 1 ]; then rm -rf "$out"; fi
  if [ "$status" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz: fuzz_$name failed (exit $status); the input is in build/fuzz/artifacts/" >&2
    exit 1
  fi
done
echo "=== fuzz: every harness ran without a finding"
