#!/usr/bin/env bash
# End-to-end capacity (issue 7), in one command: the whole system as separate processes
# (serve x2, project x1, saga x2) on one nats-server and then on a three-node cluster
# (R3), each with a private PostgreSQL; checkouts offered at rising rates through
# `shopstream-loadgen`; orders/s to confirmation and placement-to-confirmation
# percentiles per step, against raw JetStream publish on the same servers.
#
#   bash scripts/capacity.sh
#   CAPACITY_RATES=10,30,60 CAPACITY_SECONDS=30 CAPACITY_TOPOLOGIES=cluster bash scripts/capacity.sh
#
# Bounded: per topology, start-up (at most 3 minutes), each step's load, then at most
# 240 s for its orders to settle; the release build comes on top.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
exec cargo bench --locked --bench capacity
