#!/usr/bin/env bash
# README command 2 (and .ci/run): install what is missing, then build and run the whole test
# suite three times: Release, ASan+UBSan and TSan. Fails on the first failing build or test.
# DVROUTER_TEST_PRESETS overrides the list, e.g. DVROUTER_TEST_PRESETS=release.
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
