#!/usr/bin/env bash
# Image facts for the README, with the release binary: image size, time
# from `podman run` to the first served request (podman's own start-up
# included), and the idle RSS of vigil inside the container; plus the
# podman-stop hand-over under load. Runs tests/container.rs's pair test
# (root, podman, runc, mmdebstrap) with VIGIL_CONTAINER_BINARY pointing at
# target/release/vigil, RUNS times (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
cargo build --release --quiet --bin vigil
for i in $(seq "$runs"); do
  echo "run $i of $runs"
  VIGIL_CONTAINER_BINARY="$PWD/target/release/vigil" \
    cargo test --quiet --test container containers_elect -- --nocapture 2>&1 |
    grep -E "FIGURE|podman stop under load|test result"
done
