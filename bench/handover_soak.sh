#!/usr/bin/env bash
# Hand-over soak (issue 14), in network namespaces on this machine only
# (10.231.242.0/24): hand-overs of each kind (planned stop, upstream pool
# death, tracked interface down, and preemption back each time) under
# wrk keep-alive load plus a new connection every 5 ms, every failed
# request counted by kind. See bench/handover_soak.rs.
#
#   sudo bench/handover_soak.sh [--cycles N] [--budget SECONDS] [--debug]
#                                [--kinds planned,upstream,interface]
#
# Defaults: 200 cycles (200 hand-overs of each fault kind, 600 preemptions,
# about 5 s a cycle with its two halves: ~50 min), within a budget of
# 3600 s. --debug uses the debug build (no release build needed; slower
# per request, the same hand-over logic).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
args=()
for a in "$@"; do
  case "$a" in
    --debug) profile=debug ;;
    *) args+=("$a") ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "needs root (network namespaces)" >&2
  exit 1
fi
for pair in ip:iproute2 wrk:wrk curl:curl ping:iputils-ping; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${pair#*:}" >/dev/null
  }
done
if [ "$profile" = release ]; then
  cargo build --release --quiet --bin vigil --example handover_soak
else
  cargo build --quiet --bin vigil --example handover_soak
fi
budget=3600
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = --budget ] && budget=${args[$((i + 1))]}
done
# The bench stops starting cycles at its budget; timeout is the backstop.
timeout -k 60 $((budget + 300)) "target/$profile/examples/handover_soak" \
  --vigil "target/$profile/vigil" "${args[@]}"
