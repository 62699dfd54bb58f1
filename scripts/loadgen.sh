#!/usr/bin/env bash
# Shopping traffic through the GraphQL API at a fixed rate, then the invariant checker.
#
#   bash scripts/loadgen.sh                        # 50 requests/s for 30 s, the default mix
#   RATE=200 LOAD_SECONDS=60 bash scripts/loadgen.sh
#   MIX=checkout=1,order_status=1 RATE=100 bash scripts/loadgen.sh
#
# Starts its own nats-server, database and shopstream roles (serve, project, saga) from a
# release build on free ports (rate limits off), sets up a catalog through the API, runs
# `shopstream-loadgen`, then `shopstream-loadgen check` on its record, and prints both.
# Exits with the checker's code (2 when an invariant failed). Bounded: the load runs
# LOAD_SECONDS, the checker waits at most SETTLE_SECONDS for orders to settle.
# SHOPSTREAM_BIN and LOADGEN_BIN run binaries built already instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
RATE="${RATE:-50}"
LOAD_SECONDS="${LOAD_SECONDS:-30}"
SETTLE_SECONDS="${SETTLE_SECONDS:-120}"
PRODUCTS="${PRODUCTS:-40}"
STOCK="${STOCK:-5000}"
SEED="${SEED:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
if [ -n "${SHOPSTREAM_BIN:-}" ] && [ -n "${LOADGEN_BIN:-}" ]; then
  BIN="$SHOPSTREAM_BIN"   # binaries built already (skips the release build)
  LOADGEN="$LOADGEN_BIN"
else
  cargo build --release --locked -p shopstream -p shopstream-loadgen \
    --bin shopstream --bin shopstream-loadgen >/dev/null
  BIN="${SHOPSTREAM_BIN:-$CARGO_TARGET_DIR/release/shopstream}"
  LOADGEN="${LOADGEN_BIN:-$CARGO_TARGET_DIR/release/shopstream-loadgen}"
fi

WORK="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NATS_PORT="$(free_port)"; HTTP_PORT="$(free_port)"
DB="shopstream_loadgen_$$"
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export HTTP_ADDR="127.0.0.1:$HTTP_PORT"
export JWT_SECRET="loadgen-secret-loadgen-secret-loadgen"
# One client address and a few accounts would hit the per-IP and per-user limits.
export RATE_LIMIT_IP_PER_SECOND=0 RATE_LIMIT_USER_PER_SECOND=0 RUST_LOG=warn
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" postgres >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
jetstream { store_dir: "$WORK/nats", sync_interval: always }
CONF
nats-server -c "$WORK/nats.conf" >"$WORK/nats.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done
"$BIN" migrate >/dev/null 2>&1
"$BIN" serve >"$WORK/serve.log" 2>&1 & PIDS+=($!)
"$BIN" project >"$WORK/project.log" 2>&1 & PIDS+=($!)
"$BIN" saga >"$WORK/saga.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://$HTTP_ADDR/readyz" >/dev/null && break; sleep 0.2; done

export LOADGEN_ADMIN_EMAIL=admin@loadgen.local LOADGEN_ADMIN_PASSWORD="loadgen-admin-password"
SHOPSTREAM_PASSWORD="$LOADGEN_ADMIN_PASSWORD" "$BIN" accounts create --email "$LOADGEN_ADMIN_EMAIL" --role admin >/dev/null

echo "nats-server $(nats-server --version | awk '{print $NF}'), PostgreSQL $(psql -tA -h 127.0.0.1 -U postgres -c 'SHOW server_version' postgres | cut -d' ' -f1), $(nproc) cores"
MIX_ARGS=()
if [ -n "${MIX:-}" ]; then MIX_ARGS=(--mix "$MIX"); fi
"$LOADGEN" --url "http://$HTTP_ADDR/graphql" --rate "$RATE" --duration "${LOAD_SECONDS}s" \
  --setup --products "$PRODUCTS" --stock "$STOCK" --seed "$SEED" "${MIX_ARGS[@]}" \
  --record "$WORK/record.jsonl"
echo
status=0
"$LOADGEN" check --record "$WORK/record.jsonl" --settle-timeout "${SETTLE_SECONDS}s" || status=$?
exit "$status"
