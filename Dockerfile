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
# what it needs itself: without --cap-add it still runs as a plain proxy
# (and says VRRP is unavailable and why); VRRP needs NET_ADMIN (VIP
# addresses) and NET_RAW (adverts, ARP).
#
# Without a registry (tests/container.rs does this with podman): build the
# binary outside, put it at prebuilt/vigil in the build context, and pick
# the prebuilt stage and a locally made base:
#
#   podman build --pull=never --build-arg VIGIL_BINARY=prebuilt \
#     --build-arg BASE=localhost/debian:bookworm-slim -t vigil .
#
# The compile stage is then never built (unused stages are skipped), so its
# rust image need not exist.

ARG VIGIL_BINARY=compile
ARG BASE=debian:bookworm-slim

FROM rust:1-bookworm AS compile
# The binary is profile-guided (scripts/build-release: an instrumented
# build trained for a minute, then the build with the profile), which
# needs wrk, curl and openssl for the training and llvm-profdata.
# --build-arg PROFILE_GUIDED=0 makes a plain `cargo build --release`.
ARG PROFILE_GUIDED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends wrk curl openssl \
 && rm -rf /var/lib/apt/lists/* \
 && rustup component add llvm-tools
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Targets declared in Cargo.toml must exist for cargo to read the manifest.
COPY benches ./benches
COPY bench/failover.rs ./bench/failover.rs
COPY bench/failover_http.rs ./bench/failover_http.rs
COPY bench/handover_soak.rs ./bench/handover_soak.rs
COPY examples ./examples
COPY certs/make-dev-certs.sh ./certs/make-dev-certs.sh
COPY scripts/build-release ./scripts/build-release
RUN mkdir /out \
 && if [ "$PROFILE_GUIDED" = 1 ]; then \
      scripts/build-release /out/vigil; \
    else \
      cargo build --release --locked --bin vigil && cp target/release/vigil /out/vigil; \
    fi \
 && strip /out/vigil

FROM scratch AS prebuilt
COPY prebuilt/vigil /out/vigil

# The stage named by VIGIL_BINARY provides /out/vigil.
FROM ${VIGIL_BINARY} AS binary

FROM ${BASE}
# One layer: the binary is copied and given its capabilities in the same
# step (a separate setcap step would store it a second time), and
# libcap2-bin leaves with the apt lists.
# "+p" (permitted, not effective): exec never fails for lack of a
# capability; vigil raises the ones the container was given.
RUN --mount=type=bind,from=binary,source=/out/vigil,target=/tmp/vigil \
    apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
 && useradd --system --uid 10001 --user-group --home-dir /etc/vigil --shell /usr/sbin/nologin vigil \
 && install -m 0755 /tmp/vigil /usr/local/bin/vigil \
 && setcap cap_net_admin,cap_net_raw,cap_net_bind_service+p /usr/local/bin/vigil \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
COPY conf/vigil.toml /etc/vigil/vigil.toml
COPY www /etc/www
USER vigil
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["run", "-c", "/etc/vigil/vigil.toml"]
