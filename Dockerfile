# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run as a non-root user in a slim image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# BuildKit cache mounts keep the cargo registry and the target directory between
# builds, so a source change recompiles the workspace's crates, not its dependencies.
# The binary is copied out because the cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin shopstream \
    && cp target/release/shopstream /usr/local/bin/shopstream

FROM debian:bookworm-slim
# curl serves the compose healthchecks (/readyz, /livez); ca-certificates for TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 shopstream \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/shopstream \
       --shell /usr/sbin/nologin shopstream
COPY --from=build /usr/local/bin/shopstream /usr/local/bin/shopstream
# Numeric, so that runtimes can check it is not root without reading /etc/passwd. The
# home directory holds the operator commands' session file (`shopstream login`).
USER 10001:10001
ENV HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080 9090
ENTRYPOINT ["shopstream"]
CMD ["serve"]
