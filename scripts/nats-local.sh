#!/usr/bin/env bash
# Tries journal.backend: nats on one machine (docs/journal-nats.md): starts three clustered
# nats-servers with JetStream on loopback (client ports 14222-14224, routes 16222-16224, stores
# under $DIR, default /tmp/dvrouter-nats) and a dvrouter whose journal is a stream of 3 replicas
# on them, in the foreground. Ctrl-C stops the router, then the servers (by their PIDs).
#   scripts/nats-local.sh            then post webhooks to http://127.0.0.1:8080/webhooks/dataverse
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${DIR:-/tmp/dvrouter-nats}
bin=./build/release/dvrouter
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || ./scripts/install-deps.sh
[ -x "$bin" ] || { cmake --preset release && cmake --build --preset release --target dvrouter; }
server=$(command -v nats-server || echo /usr/sbin/nats-server)

mkdir -p "$dir"
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT

for i in 0 1 2; do
  routes=""
  for k in 0 1 2; do
    [ "$k" = "$i" ] || routes+="    nats-route://127.0.0.1:$((16222 + k))"$'\n'
  done
  mkdir -p "$dir/n$i"
  cat > "$dir/n$i/nats.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((14222 + i))
jetstream { store_dir: "$dir/n$i/store" }
cluster {
  name: dvrouter-local
  listen: 127.0.0.1:$((16222 + i))
  routes: [
$routes  ]
}
CONF
  "$server" -c "$dir/n$i/nats.conf" > "$dir/n$i/nats.log" 2>&1 &
  pids+=($!)
done

export DVROUTER_WEBHOOK_KEY=${DVROUTER_WEBHOOK_KEY:-local-key}
cat > "$dir/router.yaml" <<CONF
ingress:
  listen: 127.0.0.1:8080
  auth: {mode: webhook_key, secret: "\${DVROUTER_WEBHOOK_KEY}"}
journal:
  data_dir: $dir/router
  backend: nats
  nats:
    servers: [nats://127.0.0.1:14222, nats://127.0.0.1:14223, nats://127.0.0.1:14224]
    replicas: 3
CONF
echo "nats-local: 3 nats-servers (logs in $dir/n*/nats.log); webhook key \$DVROUTER_WEBHOOK_KEY"
"$bin" serve -c "$dir/router.yaml"
