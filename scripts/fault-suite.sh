#!/usr/bin/env bash
# The fault suite (issue 7), in one command: a three-node NATS cluster, a private
# PostgreSQL and every role replicated, as separate processes on this machine, under
# load from `shopstream-loadgen`, while roles, NATS nodes and PostgreSQL are killed,
# restarted and paused; then `shopstream-loadgen check --verify-read-models` checks the
# invariants against the load generator's record. Exits non-zero when one fails.
#
#   bash scripts/fault-suite.sh                          # 60 s of load at 60 requests/s
#   FAULT_SECONDS=120 FAULT_RATE=100 bash scripts/fault-suite.sh
#
# Bounded: the load runs FAULT_SECONDS, the check waits at most 240 s for orders to
# settle; start-up and the release build come on top.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
exec cargo bench --locked --bench faults
