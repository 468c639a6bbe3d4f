#!/usr/bin/env bash
# README command 2 (and .ci/run): install what is missing, then build and run the whole test
# suite three times: Release, ASan+UBSan and TSan, then a smoke run of the fuzz harnesses
# (scripts/fuzz.sh --smoke). Fails on the first failing build or test.
# DVROUTER_TEST_PRESETS overrides the list, e.g. DVROUTER_TEST_PRESETS=release;
# DVROUTER_TEST_FUZZ=0 leaves the fuzz smoke run out.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

# Formatting is part of the suite: a diff here fails the run.
if ! clang-format --dry-run --Werror $(git ls-files '*.h' '*.cc' 2>/dev/null || find router adapters bench tests -name '*.h' -o -name '*.cc'); then
  echo "test: clang-format finds unformatted files (run clang-format -i on them)" >&2
  exit 1
fi

presets=${DVROUTER_TEST_PRESETS:-"release asan-ubsan tsan"}
for preset in $presets; do
  echo "=== $preset: build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  echo "=== $preset: test"
  ctest --preset "$preset" -j2 --timeout 600
done
echo "=== all test presets passed: $presets"
if [ "${DVROUTER_TEST_FUZZ:-1}" != 0 ]; then
  echo "=== fuzz: smoke run"
  ./scripts/fuzz.sh --smoke
fi
