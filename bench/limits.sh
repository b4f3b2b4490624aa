#!/usr/bin/env bash
# What a configured limit costs a proxied request when it is not hit:
# vigil's instructions per proxied request (valgrind --tool=callgrind,
# steady on a loaded machine where wall-clock figures are not), without
# edge controls and with limit_req + limit_conn (keyed by
# $binary_remote_addr, rates far above the load) and an allow/deny list,
# and with one limit_req alone (the issue's "a limit configured").
#
# Each config runs twice under callgrind with a different number of
# requests (wrk, one connection, keep-alive); the difference of the
# totals divided by the difference of the request counts is the cost of
# one request, free of start-up and shutdown.
#
# Usage: bench/limits.sh [short-seconds] [long-seconds]   (default 3 8)
# Needs: valgrind, nginx (the backend), wrk, cargo.
set -euo pipefail

SHORT=${1:-3}
LONG=${2:-8}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/vigil-limits.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk || ! need valgrind; then
  echo "installing nginx, wrk and valgrind..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk valgrind >/dev/null
fi

echo "building vigil (release)..." >&2
(cd "$ROOT" && cargo build --release -q --bin vigil)
VIGIL="$ROOT/target/release/vigil"

PORT_BASE=${PORT_BASE:-19300}
BACKEND=$((PORT_BASE + 1))
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$BACKEND; location / { return 200 "hello\n"; } }
}
NGINX
nginx -c "$WORK/nginx.conf"

config() { # name port edge(0: none, 1: all three, 2: one limit_req)
  local edge_server="" zones=""
  if [ "$3" = 2 ]; then
    zones='
[limit_req_zone.perip]
key = "$binary_remote_addr"
rate = "1000000r/s"
size = "10m"
'
    edge_server='limit_req = [{ zone = "perip", burst = 1000, nodelay = true }]'
  elif [ "$3" = 1 ]; then
    zones='
[limit_req_zone.perip]
key = "$binary_remote_addr"
rate = "1000000r/s"
size = "10m"

[limit_conn_zone.addr]
key = "$binary_remote_addr"
size = "10m"
'
    edge_server='access = ["allow 127.0.0.0/8", "deny all"]
limit_req = [{ zone = "perip", burst = 1000, nodelay = true }]
limit_conn = [{ zone = "addr", limit = 1000 }]'
  fi
  cat >"$WORK/$1.toml" <<TOML
[http]
workers = 1

[log]
access_log = "off"
level = "warn"
$zones
[[server]]
listen = ["127.0.0.1:$2"]
$edge_server

  [[server.location]]
  path = "/"
  proxy_pass = "http://127.0.0.1:$BACKEND"
TOML
}

# Runs vigil under callgrind for `seconds` of load; prints "requests instructions".
measure() { # name port seconds
  local out="$WORK/cg.$1.$3"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$VIGIL" run -c "$WORK/$1.toml" \
    >"$WORK/$1.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "http://127.0.0.1:$2/" && break
    sleep 0.2
  done
  local reqs
  reqs=$(wrk -t1 -c1 -d"$3"s "http://127.0.0.1:$2/" | awk '/requests in/ {print $1}')
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  local total
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$out")
  echo "$reqs $total"
}

per_request() { # name port
  read -r r1 i1 < <(measure "$1" "$2" "$SHORT")
  read -r r2 i2 < <(measure "$1" "$2" "$LONG")
  if [ "$r2" -le "$r1" ]; then
    echo "no more requests in the long run than the short one ($r1, $r2)" >&2
    exit 1
  fi
  echo $(( (i2 - i1) / (r2 - r1) ))
}

config plain $((PORT_BASE + 2)) 0
config edge $((PORT_BASE + 3)) 1
config one $((PORT_BASE + 4)) 2
echo "measuring (callgrind: each run is ~50x slower than native; loaded machine figures are instruction counts, not time)" >&2
plain=$(per_request plain $((PORT_BASE + 2)))
edge=$(per_request edge $((PORT_BASE + 3)))
one=$(per_request one $((PORT_BASE + 4)))
echo "instructions per proxied request, vigil with 1 worker, keep-alive, 1 connection:"
printf "  %-48s %10d\n" "no edge controls" "$plain"
printf "  %-48s %10d\n" "one limit_req, not hit" "$one"
printf "  %-48s %10d\n" "allow/deny + limit_req + limit_conn, not hit" "$edge"
awk -v a="$plain" -v b="$one" 'BEGIN { printf "  cost of one limit: %+d instructions (%+.2f %%)\n", b - a, (b - a) * 100 / a }'
awk -v a="$plain" -v b="$edge" 'BEGIN { printf "  cost of all three controls: %+d instructions (%+.2f %%)\n", b - a, (b - a) * 100 / a }'
