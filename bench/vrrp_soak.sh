#!/usr/bin/env bash
# VRRP soak (issue 15, "No false failover"): a vigil pair and a
# keepalived 2.2.7 pair (+ nginx) side by side, each in its own lab of
# network namespaces on this machine only (10.231.60.0/24 and
# 10.231.61.0/24, VRIDs 60 and 61), under the same stress: wrk on every
# node, two CPU hogs, reload bursts every 30 s, access logs to a slowly
# drained FIFO. A raw-socket observer on each lab's bridge counts
# transitions, dual-master time and advert lag. See bench/vrrp_soak.rs.
#
#   sudo bench/vrrp_soak.sh [--intervals 10,20,50] [--minutes N] [--hogs N]
#                           [--proxy-probe MS]
#                           [--budget SECONDS] [--out FILE]
#
# Defaults: 10, 20 and 50 ms adverts, 10 minutes each (about 32 minutes
# in all), within a budget of 3 hours. The table is printed at the end
# (and written to --out).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "needs root (network namespaces)" >&2
  exit 1
fi
packages=""
for pair in ip:iproute2 keepalived:keepalived nginx:nginx-light wrk:wrk curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || packages="$packages ${pair#*:}"
done
if [ -n "$packages" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq $packages >/dev/null
fi

cargo build --release --quiet --bin vigil --example vrrp_soak

# The budget the bench keeps, for `timeout` to add a margin to.
budget=10800
minutes=10
intervals=3
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --budget) budget=${args[$((i + 1))]} ;;
    --minutes) minutes=${args[$((i + 1))]} ;;
    --intervals) intervals=$(echo "${args[$((i + 1))]}" | tr ',' '\n' | wc -l) ;;
  esac
done
# Never longer than the soaks plus a minute of set-up each, nor the budget.
limit=$(awk -v m="$minutes" -v n="$intervals" -v b="$budget" \
  'BEGIN { t = n * (m * 60 + 60); if (b < t) t = b; printf "%d", t + 120 }')
# The bench stops at its budget and cleans up on SIGTERM; -k: SIGKILL a
# minute later (the next Lab::new collects leftover namespaces).
exec timeout -k 60 "$limit" target/release/examples/vrrp_soak \
  --vigil target/release/vigil "$@"
