#!/usr/bin/env bash
# README command 1: install what is missing, build Release, run dvrouter on the quickstart config.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target dvrouter

if [ -z "${DVROUTER_WEBHOOK_KEY:-}" ]; then
  DVROUTER_WEBHOOK_KEY=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
  export DVROUTER_WEBHOOK_KEY
  echo "quickstart: DVROUTER_WEBHOOK_KEY was not set; using a generated key for this run:"
  echo "  export DVROUTER_WEBHOOK_KEY=$DVROUTER_WEBHOOK_KEY"
fi
exec ./build/release/dvrouter serve -c deploy/examples/quickstart.yaml "$@"
