#!/usr/bin/env bash
# Failover benchmark: vigil vs keepalived with the same VRRP settings, in
# network namespaces on this machine only (10.231.240.0/24).
#
#   sudo bench/failover.sh [--trials N] [--budget SECONDS]
#
# Installs what it needs (Debian/Ubuntu), builds vigil in release mode,
# and prints the outage per fault for both daemons and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "needs root (network namespaces)" >&2
  exit 1
fi
missing=""
for tool in ip ping keepalived; do
  command -v "$tool" >/dev/null 2>&1 || missing=1
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq iproute2 iputils-ping keepalived >/dev/null
fi

cargo build --release --quiet --bin vigil --example failover
# Bounded: the bench has its own budget; this is the backstop.
exec timeout 900 target/release/examples/failover --vigil target/release/vigil "$@"
