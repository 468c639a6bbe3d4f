#!/usr/bin/env bash
# Installs the Debian 12 packages dvrouter builds and tests with, skipping those already there,
# then the console test's npm package (tests/ui: playwright-core, which drives the system
# Chromium) from its lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build ccache pkg-config git curl openssl clang-format
  libboost-dev libsimdjson-dev prometheus-cpp-dev libyaml-cpp-dev libxxhash-dev xxhash
  libcli11-dev libssl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libpq-dev libsqlite3-dev postgresql-15 zlib1g-dev libzstd-dev libjemalloc-dev clickhouse-server
  clang-14 libclang-rt-14-dev slowhttptest chromium prometheus libnats-dev nats-server
)
# Node.js for the console test: Debian's, unless the machine has one already.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The console test's packages, exactly as locked (no browser download: it uses /usr/bin/chromium).
if ! cmp -s tests/ui/package-lock.json tests/ui/node_modules/.installed-lock.json; then
  echo "install-deps: npm ci in tests/ui"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/ui --no-audit --no-fund --loglevel=error
  cp tests/ui/package-lock.json tests/ui/node_modules/.installed-lock.json
fi
