#!/usr/bin/env bash
# Failover benchmarks, in network namespaces on this machine only:
#
#   sudo bench/failover.sh [all|vrrp|http] [options]
#
#   vrrp  vigil (with and without death_probe) vs keepalived alone, same
#         VRRP settings: outage of a UDP service for SIGKILL / SIGSTOP /
#         link down / SIGTERM (10.231.240.0/24). Options: --trials N
#         --budget SECONDS --advert-ms MS (default 100)
#         --faults sigkill,sigstop,linkdown,sigterm
#         --daemons vigil,vigil+probe,keepalived
#   http  vigil vs nginx + keepalived under HTTP load (wrk, a strict
#         keep-alive client, a new-connection prober): outage and failed
#         requests for a planned stop, a wedged proxy, dead upstreams
#         (10.231.241.0/24). Options: --trials N --budget SECONDS
#         --scenarios planned,wedged,upstreams
#         --stop-orders keepalived-first,together,nginx-first
#         --wrk-connections N --wrk-delay-ms MS --stall-ms MS --advert-ms MS
#         --pcap [--pcap-filter EXPR] --keep DIR
#   all   both (default): about 10 minutes with the defaults.
#
# Installs what it needs (Debian/Ubuntu), builds vigil in release mode,
# and prints the tables at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

what=all
case "${1:-}" in
  all | vrrp | http)
    what=$1
    shift
    ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "needs root (network namespaces)" >&2
  exit 1
fi
need="ip:iproute2 ping:iputils-ping keepalived:keepalived"
if [ "$what" != vrrp ]; then
  need="$need nginx:nginx-light wrk:wrk curl:curl"
  case " $* " in *" --pcap"*) need="$need tcpdump:tcpdump" ;; esac
fi
packages=""
for pair in $need; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || packages="$packages ${pair#*:}"
done
if [ -n "$packages" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq $packages >/dev/null
fi

cargo build --release --quiet --bin vigil --example failover --example failover_http

# Each bench has its own budget; `timeout` is the backstop (the http bench
# finishes its trial and cleans up on SIGTERM; -k: SIGKILL a minute later).
if [ "$what" != http ]; then
  # (It reads --trials and --budget, and ignores the http options.)
  timeout -k 60 900 target/release/examples/failover --vigil target/release/vigil "$@"
fi
if [ "$what" != vrrp ]; then
  timeout -k 60 1200 target/release/examples/failover_http --vigil target/release/vigil "$@"
fi
