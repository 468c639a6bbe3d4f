#!/usr/bin/env bash
# Installs the Debian 12 packages dvrouter builds and tests with, skipping those already there.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git curl openssl clang-format
  libboost-dev libsimdjson-dev prometheus-cpp-dev libyaml-cpp-dev libxxhash-dev xxhash
  libcli11-dev libssl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libpq-dev libsqlite3-dev postgresql-15 zlib1g-dev libzstd-dev clickhouse-server
  clang-14 libclang-rt-14-dev slowhttptest prometheus
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
