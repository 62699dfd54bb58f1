#!/usr/bin/env bash
# Runs the whole system on this machine: a JetStream nats-server (fsync on every write,
# state in .data/nats), PostgreSQL, `shopstream project` (the projectors that build the
# read models), `shopstream saga` (drives placed orders, with the simulated payment
# provider) and `shopstream serve` (the GraphQL API) on HTTP_ADDR (default
# 127.0.0.1:8080), with a first admin account. Ctrl-C stops
# shopstream and the nats-server it started.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
export DATABASE_URL="${SHOPSTREAM_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shopstream}"
export NATS_PORT="${NATS_PORT:-4333}"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:$NATS_PORT}"

mkdir -p .data/nats
sed "s|/data|$PWD/.data/nats|; s|port: 4222|port: $NATS_PORT|; s|http_port: 8222|http_port: $((NATS_PORT + 1))|" \
  infra/nats/nats-server.conf > .data/nats-server.conf
nats-server -c .data/nats-server.conf -l .data/nats-server.log &
nats_pid=$!
trap 'kill $nats_pid 2>/dev/null || true' EXIT
echo "nats-server (pid $nats_pid) on $NATS_URL, log in .data/nats-server.log"

cargo build --locked --bin shopstream
target_dir="${CARGO_TARGET_DIR:-target}"
# One JWT secret for this checkout, so sessions survive restarts.
if [ ! -s .data/jwt-secret ]; then
  head -c 48 /dev/urandom | base64 | tr -d '\n/+=' > .data/jwt-secret
fi
export JWT_SECRET="${JWT_SECRET:-$(cat .data/jwt-secret)}"
# A first admin for local use (created once; the password is kept in .data).
if [ ! -s .data/admin-password ]; then
  head -c 24 /dev/urandom | base64 | tr -d '\n/+=' > .data/admin-password
fi
if SHOPSTREAM_PASSWORD="$(cat .data/admin-password)" "$target_dir/debug/shopstream" accounts create \
     --email admin@shopstream.local --role admin >/dev/null 2>&1; then
  echo "created admin@shopstream.local (password in .data/admin-password)"
fi
echo "GraphQL: http://${HTTP_ADDR:-127.0.0.1:8080}/graphql (GraphiQL in a browser), admin@shopstream.local / .data/admin-password"
echo "Operator and auditor commands: sign in first, e.g. in another shell with this NATS_URL and DATABASE_URL:"
echo "  SHOPSTREAM_PASSWORD=\"\$(cat .data/admin-password)\" $target_dir/debug/shopstream login --email admin@shopstream.local"
"$target_dir/debug/shopstream" project &
projector_pid=$!
"$target_dir/debug/shopstream" saga &
saga_pid=$!
trap 'kill $saga_pid $projector_pid 2>/dev/null || true; kill $nats_pid 2>/dev/null || true' EXIT
"$target_dir/debug/shopstream" serve
