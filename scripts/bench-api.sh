#!/usr/bin/env bash
# The GraphQL read path under load, measured with an external HTTP load tool (hey) at a
# fixed rate, against the same reads sent straight to PostgreSQL (pgbench) in the same run.
#
#   bash scripts/bench-api.sh                 # 1,000 requests/s for 15 s per query
#   RATE=2000 SECONDS_PER_RUN=20 bash scripts/bench-api.sh
#
# Starts its own nats-server, database and shopstream roles (serve, project, saga) on free
# ports, seeds a catalog and confirmed orders through the API, and prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
if ! command -v hey >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq hey >/dev/null; else sudo apt-get install -y -qq hey >/dev/null; fi
fi
RATE="${RATE:-1000}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-15}"
WORKERS="${WORKERS:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked --bin shopstream >/dev/null
BIN="$CARGO_TARGET_DIR/release/shopstream"

WORK="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NATS_PORT="$(free_port)"; HTTP_PORT="$(free_port)"
DB="shopstream_bench_$$"
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export HTTP_ADDR="127.0.0.1:$HTTP_PORT"
export JWT_SECRET="bench-secret-bench-secret-bench-secret"
export RATE_LIMIT_IP_PER_SECOND=0 RATE_LIMIT_USER_PER_SECOND=0 RUST_LOG=warn
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" postgres >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

nats-server -js -p "$NATS_PORT" -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 & PIDS+=($!)
sleep 0.5
"$BIN" migrate >/dev/null 2>&1
"$BIN" serve >"$WORK/serve.log" 2>&1 & PIDS+=($!)
"$BIN" project >"$WORK/project.log" 2>&1 & PIDS+=($!)
"$BIN" saga >"$WORK/saga.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://$HTTP_ADDR/readyz" >/dev/null && break; sleep 0.2; done

SHOPSTREAM_PASSWORD=bench-password "$BIN" accounts create --email admin@bench.local --role admin >/dev/null
SHOPSTREAM_PASSWORD=bench-password "$BIN" accounts create --email customer@bench.local --role customer >/dev/null
python3 benches/api/seed.py "http://$HTTP_ADDR/graphql" "$WORK"
ORDER_ID="$(cat "$WORK/order_id")"; TOKEN="$(cat "$WORK/customer_token")"; ORDER_UUID="${ORDER_ID##*/}"

run_hey() { # name body-file
  hey -z "${SECONDS_PER_RUN}s" -c "$WORKERS" -q "$((RATE / WORKERS))" -m POST \
    -H "Authorization: Bearer $TOKEN" -T application/json -D "$2" \
    "http://$HTTP_ADDR/graphql" >"$WORK/$1.hey"
}
python3 - "$ORDER_ID" "$WORK" <<'PY'
import json, sys
order_id, work = sys.argv[1], sys.argv[2]
json.dump({"query": "query($id: ID!) { order(id: $id) { id status total { amount currencyCode } lines { sku quantity unitPrice { amount } } statusTimeline { status } } }",
           "variables": {"id": order_id}}, open(f"{work}/order.json", "w"))
json.dump({"query": "{ products(first: 20, filter: { category: \"Bench\", inStock: true }, sortKey: PRICE) { totalCount nodes { id name price { amount currencyCode } available } } }"},
          open(f"{work}/products.json", "w"))
PY
# The statement `order(id)` runs (projections::orders::order).
cat >"$WORK/order.sql" <<SQL
SELECT o.*,
  (SELECT coalesce(json_agg(json_build_array(l.sku, l.quantity, l.unit_price_minor, l.line_total_minor, l.currency) ORDER BY l.line_no), '[]'::json)
     FROM orders.order_lines l WHERE l.order_id = o.order_id) AS lines,
  (SELECT coalesce(json_agg(json_build_array(t.status, t.occurred_at, t.reason, t.position) ORDER BY t.position, t.event_index), '[]'::json)
     FROM orders.status_timeline t WHERE t.order_id = o.order_id) AS timeline
FROM orders.orders o WHERE o.order_id = '$ORDER_UUID';
SQL
cat >"$WORK/products.sql" <<'SQL'
SELECT p.product_id, p.name, p.price_minor, st.available FROM catalog.products p
CROSS JOIN LATERAL (SELECT COALESCE(sum(GREATEST(s.on_hand - s.reserved, 0)), 0)::bigint AS available
  FROM catalog.variants v JOIN catalog.sku_stock s ON s.sku = v.sku WHERE v.product_id = p.product_id AND NOT v.retired) st
WHERE p.category = 'Bench' AND p.published AND st.available > 0 ORDER BY p.price_key, p.product_id LIMIT 21;
SELECT count(*) FROM catalog.products p
CROSS JOIN LATERAL (SELECT COALESCE(sum(GREATEST(s.on_hand - s.reserved, 0)), 0)::bigint AS available
  FROM catalog.variants v JOIN catalog.sku_stock s ON s.sku = v.sku WHERE v.product_id = p.product_id AND NOT v.retired) st
WHERE p.category = 'Bench' AND p.published AND st.available > 0;
SQL
run_pgbench() { # name sql-file
  (cd "$WORK" && pgbench -n -h 127.0.0.1 -U postgres -R "$RATE" -T "$SECONDS_PER_RUN" -c "$WORKERS" -j 2 \
     -f "$2" -l --log-prefix="$1" "$DB" >"$WORK/$1.pgbench" 2>&1)
}
echo "warming up" >&2
hey -n 2000 -c 10 -m POST -H "Authorization: Bearer $TOKEN" -T application/json -D "$WORK/order.json" "http://$HTTP_ADDR/graphql" >/dev/null
for query in order products; do
  echo "load: $query via GraphQL" >&2; run_hey "$query" "$WORK/$query.json"
  echo "load: $query via PostgreSQL" >&2; run_pgbench "pg_$query" "$WORK/$query.sql"
done
# One client, back to back: what each layer costs without any queueing.
for query in order products; do
  hey -n 2000 -c 1 -m POST -H "Authorization: Bearer $TOKEN" -T application/json -D "$WORK/$query.json" \
    "http://$HTTP_ADDR/graphql" >"$WORK/$query.single.hey"
  (cd "$WORK" && pgbench -n -h 127.0.0.1 -U postgres -c 1 -t 2000 -f "$WORK/$query.sql" -l \
     --log-prefix="pg_$query.single" "$DB" >"$WORK/pg_$query.single.pgbench" 2>&1)
done
curl -s "http://$HTTP_ADDR/metrics" >"$WORK/metrics.txt"
python3 benches/api/report.py "$WORK" "$RATE" "$SECONDS_PER_RUN" "$(nproc)"
