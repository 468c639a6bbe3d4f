#!/usr/bin/env bash
# Tries several router nodes on one machine (docs/journal-nats.md, "Several router nodes"):
# three clustered nats-servers with JetStream on loopback (client ports 14222-14224, routes
# 16222-16224) and two dvrouter nodes on one stream of 3 replicas, node-0 (ingress :8080, admin
# :9400) and node-1 (:8081, :9401), sharing one lake directory; state under $DIR, default
# /tmp/dvrouter-cluster. Each node runs under a loop that restarts it when it exits with 75 (it
# lost the delivery lease: crash-only failover) or is killed. Ctrl-C stops the nodes, then the
# servers (by their PIDs).
#   scripts/cluster-local.sh         then post webhooks to either node, and
#   curl -s 127.0.0.1:9400/cluster   (who leads); kill -9 the leader's PID to see a failover
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${DIR:-/tmp/dvrouter-cluster}
bin=$PWD/build/release/dvrouter
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || ./scripts/install-deps.sh
[ -x "$bin" ] || { cmake --preset release && cmake --build --preset release --target dvrouter; }
server=$(command -v nats-server || echo /usr/sbin/nats-server)

mkdir -p "$dir"
pids=()
supervisors=()
stopping=0
stop() {
  stopping=1
  # The supervisors first (no restart), then the nodes they started, then the servers.
  for pid in "${supervisors[@]}"; do kill "$pid" 2>/dev/null || true; done
  for f in "$dir"/node-*/pid; do
    if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
  done
  for pid in "${supervisors[@]}"; do wait "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

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
for i in 0 1; do
  mkdir -p "$dir/node-$i"
  cat > "$dir/node-$i/router.yaml" <<CONF
ingress:
  listen: 127.0.0.1:$((8080 + i))
  auth: {mode: webhook_key, secret: "\${DVROUTER_WEBHOOK_KEY}"}
admin:
  listen: 127.0.0.1:$((9400 + i))
journal:
  data_dir: $dir/node-$i/data
  backend: nats
  nats:
    servers: [nats://127.0.0.1:14222, nats://127.0.0.1:14223, nats://127.0.0.1:14224]
    replicas: 3
cluster:
  node: node-$i
  lease_ttl: 5s
adapters:
  lake: {type: lake, dir: $dir/lake}
routes:
  - adapters: [lake]
CONF
  # The supervisor: the node again after it exits, unless the script is stopping.
  (
    while :; do
      "$bin" serve -c "$dir/node-$i/router.yaml" >> "$dir/node-$i/router.log" 2>&1 &
      child=$!
      echo "$child" > "$dir/node-$i/pid"
      echo "cluster-local: node-$i is PID $child (log $dir/node-$i/router.log)"
      code=0
      wait "$child" || code=$?
      echo "cluster-local: node-$i exited with $code; restarting it in 1 s"
      sleep 1
    done
  ) &
  supervisors+=($!)
done
echo "cluster-local: 3 nats-servers (logs in $dir/n*/nats.log), node-0 on :8080 (admin :9400)," \
  "node-1 on :8081 (admin :9401); webhook key \$DVROUTER_WEBHOOK_KEY; Ctrl-C stops all"
while [ "$stopping" = 0 ]; do sleep 1; done
