#!/usr/bin/env bash
# A three-node JetStream cluster on this machine's loopback, for manual runs and fault
# experiments: the docker-compose cluster's node configs (infra/nats/cluster/, with
# sync_interval: always) rewritten to loopback ports, state in .data/cluster/.
#
#   scripts/cluster.sh start         start the three nodes, wait until each knows the
#                                    meta leader, print NATS_URL
#   scripts/cluster.sh stop          stop them (SIGTERM) and wait until they exit
#   scripts/cluster.sh kill N        SIGKILL node N (1, 2 or 3)
#   scripts/cluster.sh restart N     start node N again (same ports and store), wait
#                                    until it is healthy
#   scripts/cluster.sh status        each node's pid and /healthz
#   scripts/cluster.sh url           print NATS_URL
#
# Node N listens for clients on NATS_CLUSTER_PORT+N (default 4440+N), for routes on
# +2000 and for monitoring on +4000. Then, for example:
#   NATS_URL="$(scripts/cluster.sh url)" NATS_REPLICAS=3 target/debug/shopstream serve
set -euo pipefail
cd "$(dirname "$0")/.."

base="${NATS_CLUSTER_PORT:-4440}"
dir="${NATS_CLUSTER_DIR:-$PWD/.data/cluster}"

client_port() { echo $((base + $1)); }
route_port() { echo $((base + 2000 + $1)); }
monitor_port() { echo $((base + 4000 + $1)); }

url() {
  local urls=()
  for n in 1 2 3; do urls+=("nats://127.0.0.1:$(client_port "$n")"); done
  (IFS=,; echo "${urls[*]}")
}

pid_of() {
  local pidfile="$dir/n$1.pid"
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    cat "$pidfile"
  fi
}

healthz() {
  curl -s --max-time 2 "http://127.0.0.1:$(monitor_port "$1")/healthz" || echo '(no answer)'
}

configure() {
  local n=$1
  mkdir -p "$dir/n$n"
  sed -e "s|^port: 4222|listen: 127.0.0.1:$(client_port "$n")|" \
      -e "s|^http_port: 8222|http: 127.0.0.1:$(monitor_port "$n")|" \
      -e "s|^  port: 6222|  listen: 127.0.0.1:$(route_port "$n")|" \
      -e "s|nats-route://nats-1:6222|nats-route://127.0.0.1:$(route_port 1)|" \
      -e "s|nats-route://nats-2:6222|nats-route://127.0.0.1:$(route_port 2)|" \
      -e "s|nats-route://nats-3:6222|nats-route://127.0.0.1:$(route_port 3)|" \
      -e "s|\"/data\"|\"$dir/n$n/js\"|" \
      "infra/nats/cluster/nats-$n.conf" > "$dir/n$n.conf"
}

start_node() {
  local n=$1
  if [ -n "$(pid_of "$n")" ]; then
    echo "node $n already runs (pid $(pid_of "$n"))"
    return
  fi
  configure "$n"
  # Detached from this shell's output: the node outlives the script, and a pipe
  # reading the script's output still ends when the script does.
  nats-server -c "$dir/n$n.conf" -l "$dir/n$n.log" </dev/null >/dev/null 2>&1 &
  echo $! > "$dir/n$n.pid"
  echo "node $n: pid $!, client port $(client_port "$n"), log $dir/n$n.log"
}

wait_healthy() {
  local n=$1
  for _ in $(seq 1 600); do
    if curl -sf --max-time 2 "http://127.0.0.1:$(monitor_port "$n")/healthz" >/dev/null; then
      return
    fi
    sleep 0.1
  done
  echo "node $n is not healthy after 60 s: $(healthz "$n"); see $dir/n$n.log" >&2
  exit 1
}

node_arg() {
  case "${1:-}" in
    1 | 2 | 3) ;;
    *) echo "which node? 1, 2 or 3" >&2; exit 2 ;;
  esac
}

case "${1:-}" in
  start)
    bash scripts/install.sh
    # shellcheck source=scripts/env.sh
    source scripts/env.sh
    for n in 1 2 3; do start_node "$n"; done
    for n in 1 2 3; do wait_healthy "$n"; done
    echo "cluster up: NATS_URL=$(url) (use NATS_REPLICAS=3)"
    ;;
  stop)
    for n in 1 2 3; do
      pid="$(pid_of "$n")"
      if [ -n "$pid" ]; then
        kill "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        echo "node $n stopped"
      fi
      rm -f "$dir/n$n.pid"
    done
    ;;
  kill)
    node_arg "${2:-}"
    pid="$(pid_of "$2")"
    if [ -n "$pid" ]; then
      kill -KILL "$pid"
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      echo "node $2 (pid $pid) killed"
    fi
    rm -f "$dir/n$2.pid"
    ;;
  restart)
    node_arg "${2:-}"
    # shellcheck source=scripts/env.sh
    source scripts/env.sh
    start_node "$2"
    wait_healthy "$2"
    echo "node $2 healthy"
    ;;
  status)
    for n in 1 2 3; do
      pid="$(pid_of "$n")"
      echo "node $n: pid ${pid:-none}, /healthz $(healthz "$n")"
    done
    ;;
  url)
    url
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
