# Sourced by the other scripts: puts the project's pinned tools first on PATH and sets
# the defaults for a local run. Every value can be overridden from the environment.
TOOLS="${SHOPSTREAM_TOOLS:-$HOME/.local/share/shopstream}"
export PATH="$TOOLS/bin:$PATH"
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$TOOLS/bin/nats-server}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
