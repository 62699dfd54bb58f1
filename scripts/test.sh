#!/usr/bin/env bash
# Runs every check shopstream has, as CI does: installs what is missing, then format,
# lints, all tests (against real nats-server and PostgreSQL), the compose files' schema and
# the nats-server configurations they mount.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
echo "==> compose files against the compose-spec schema"
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml docker-compose.single.yml
echo "==> nats-server configurations"
for config in infra/nats/nats-server.conf infra/nats/cluster/*.conf; do
  nats-server -t -c "$config"
done
echo "==> all checks passed"
