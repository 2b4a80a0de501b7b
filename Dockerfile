# syntax=docker/dockerfile:1
#
# pgcourier: build with the official Rust image, run on slim Debian as a non-root user.
# The binary embeds its SQL migrations (refinery) and trigger files (include_str!), so the
# runtime image needs nothing but the binary and CA certificates.
#
#   docker build -t pgcourier .
#   docker run --rm -e DATABASE_URL=postgres://user:pass@host:5432/db -p 127.0.0.1:8080:8080 pgcourier
#
# Base images are pinned to an exact version (the toolchain the project is tested with, and a
# Debian point release) and to the digest of that tag's multi-platform index, so that a rebuilt
# tag cannot change the image under us; bump both deliberately. The project's build machines
# cannot reach a registry: the digests are the ones other projects pin for these tags, not yet
# pulled from here. `docker buildx imagetools inspect rust:1.95.0-bookworm` prints a tag's
# current digest; a digest the registry no longer has fails the build at its FROM line.

FROM rust:1.95.0-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
WORKDIR /build
COPY . .
# Cache mounts keep the crate registry and compiled dependencies between builds (BuildKit);
# the binary is copied out of the cached target dir in the same step. Only the daemon's package is
# built: the workspace's other members (bench/, crates/testdb) are for development.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked -p pgcourier --bin pgcourier \
    && install -m 0755 target/release/pgcourier /usr/local/bin/pgcourier

FROM debian:12.11-slim@sha256:2424c1850714a4d94666ec928e24d86de958646737b1d113f5b2207be44d37d8
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pgcourier \
    && useradd --system --uid 10001 --gid pgcourier --home-dir /var/lib/pgcourier --create-home \
       --shell /usr/sbin/nologin pgcourier
COPY --from=build /usr/local/bin/pgcourier /usr/local/bin/pgcourier
USER 10001:10001
WORKDIR /var/lib/pgcourier
# The HTTP surface (API, console, /ready, /metrics): on every interface inside the container,
# so that a published port reaches it (publish it on 127.0.0.1 unless a proxy fronts it).
ENV PGCOURIER_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
# `pgcourier health` asks the daemon's own /ready (database reachable, migrations current,
# listener up): exit 0 when ready, 1 with the failing checks otherwise.
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 \
    CMD ["pgcourier", "health", "--timeout", "5s"]
# pgcourier handles SIGTERM itself: in-flight sends get PGCOURIER_SHUTDOWN_TIMEOUT (30s) to finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pgcourier"]
CMD ["run"]
