# syntax=docker/dockerfile:1
#
# pgcourier: build with the official Rust image, run on slim Debian as a non-root user.
# The binary embeds its SQL migrations (refinery) and trigger files (include_str!), so the
# runtime image needs nothing but the binary and CA certificates.
#
#   docker build -t pgcourier .
#   docker run --rm -e DATABASE_URL=postgres://user:pass@host:5432/db pgcourier

FROM rust:1-bookworm AS build
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

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pgcourier \
    && useradd --system --uid 10001 --gid pgcourier --home-dir /var/lib/pgcourier --create-home \
       --shell /usr/sbin/nologin pgcourier
COPY --from=build /usr/local/bin/pgcourier /usr/local/bin/pgcourier
USER 10001:10001
WORKDIR /var/lib/pgcourier
# The HTTP surface (PGCOURIER_HTTP_ADDR), once it lands.
EXPOSE 8080
# pgcourier handles SIGTERM itself: in-flight sends get PGCOURIER_SHUTDOWN_TIMEOUT (30s) to finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pgcourier"]
CMD ["run"]
