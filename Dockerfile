# syntax=docker/dockerfile:1
#
# vigil: multi-stage build, small runtime image, non-root user.
#
#   docker build -t vigil .
#   docker run -d --name vigil --network host \
#     --cap-add NET_ADMIN --cap-add NET_RAW \
#     -v /etc/vigil:/etc/vigil:ro vigil
#
# The binary carries file capabilities (permitted set only) and raises
# what it needs itself: without --cap-add it still runs as a plain proxy;
# VRRP needs NET_ADMIN (VIP addresses) and NET_RAW (adverts, ARP).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Targets declared in Cargo.toml must exist for cargo to read the manifest.
COPY benches ./benches
COPY bench/failover.rs ./bench/failover.rs
RUN cargo build --release --locked --bin vigil \
 && strip target/release/vigil

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /etc/vigil --shell /usr/sbin/nologin vigil
COPY --from=build /src/target/release/vigil /usr/local/bin/vigil
# "+p" (permitted, not effective): exec never fails for lack of a
# capability; vigil raises the ones the container was given.
RUN setcap cap_net_admin,cap_net_raw,cap_net_bind_service+p /usr/local/bin/vigil \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y
COPY conf/vigil.toml /etc/vigil/vigil.toml
COPY www /etc/www
USER vigil
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["run", "-c", "/etc/vigil/vigil.toml"]
