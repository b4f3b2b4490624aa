#!/usr/bin/env bash
# User-space instructions per request, vigil beside nginx, counted by
# valgrind's callgrind: a figure that does not move with the noise of a
# shared machine, so a change of 1-2 % in the work a request does shows
# (the CPU time per request of bench/proxy.sh moves by 5-10 % from run to
# run here). It counts instructions only: time spent waiting on memory
# or on cache lines another core holds does not show, and the kernel's
# share not at all; bench/proxy.sh measures those.
#
# Scenarios, each with the access log off and to a file:
#   proxied  a small response from a keep-alive upstream (nginx, return 200)
#   static   a 1 KiB file
# Both servers run under callgrind (nginx as one process, no master), a
# warm-up, then the counts are zeroed, wrk runs for SECONDS with 4
# connections, and the counts are dumped and divided by the requests.
#
# Usage: bench/instructions.sh [seconds]   (default 10)
# Environment: PORT_BASE (19300), SCENARIOS ("proxied static").
# Needs: valgrind, nginx, wrk (installed with apt-get if missing), cargo.
# Output also in $OUT (default /tmp/vigil-instructions.txt) for reports.
set -euo pipefail

DURATION=${1:-10}
SCENARIOS=${SCENARIOS:-"proxied static"}
PORT_BASE=${PORT_BASE:-19300}
OUT=${OUT:-/tmp/vigil-instructions.txt}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/vigil-instr.XXXXXX)
chmod 755 "$WORK"
SERVER_PID=""

cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -f "$WORK/backend.pid" ] && kill "$(cat "$WORK/backend.pid")" 2>/dev/null || true
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

BACKEND=$((PORT_BASE + 1))
NGINX_PORT=$((PORT_BASE + 2))
VIGIL_PORT=$((PORT_BASE + 3))
mkdir -p "$WORK/www" "$WORK/logs"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$WORK/www/1k.txt"

cat > "$WORK/backend.conf" <<CONF
worker_processes 1;
pid $WORK/backend.pid;
error_log $WORK/logs/backend-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$BACKEND;
    location / { return 200 "hello from the backend\n"; }
  }
}
CONF
nginx -c "$WORK/backend.conf"

# The same settings as bench/proxy.sh, as one process for valgrind.
nginx_conf() { # logs(0|1)
  local access="access_log off;"
  [ "$1" = 1 ] && access="access_log $WORK/logs/nginx-access.log combined;"
  cat <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/logs/nginx-error.log;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  $access
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  etag on;
  upstream app { server 127.0.0.1:$BACKEND; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
    location /api/ {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP \$remote_addr;
    }
    location / { }
  }
}
CONF
}

vigil_conf() { # logs(0|1)
  local access='"off"'
  [ "$1" = 1 ] && access="\"$WORK/logs/vigil-access.log\""
  cat <<CONF
[log]
access_log = $access
level = "warn"

[admin]
listen = "127.0.0.1:$((PORT_BASE + 4))"

[[server]]
listen = ["127.0.0.1:$VIGIL_PORT"]
root = "$WORK/www"
  [[server.location]]
  path = "/api/"
  proxy_pass = "app"
  [[server.location]]
  path = "/"

[upstream.app]
keepalive = 64
servers = [{ addr = "127.0.0.1:$BACKEND" }]
CONF
}

# count NAME PORT PATH CMD...: user instructions per request, in RESULT.
# Not run in a subshell, so that the cleanup trap knows the server's PID.
count() {
  local name=$1 port=$2 path=$3
  shift 3
  rm -f "$WORK"/cg.out*
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out.%p" "$@" \
    > "$WORK/logs/$name.valgrind.log" 2>&1 &
  SERVER_PID=$!
  local up=0
  for _ in $(seq 1 60); do
    if curl -s -o /dev/null "http://127.0.0.1:$port$path"; then up=1; break; fi
    sleep 0.5
  done
  if [ "$up" = 0 ]; then
    echo "$name did not answer on port $port under valgrind; see $WORK/logs" >&2
    exit 1
  fi
  wrk -t1 -c4 -d2s "http://127.0.0.1:$port$path" > /dev/null
  callgrind_control -z "$SERVER_PID" > /dev/null
  local requests
  requests=$(wrk -t1 -c4 -d"${DURATION}s" "http://127.0.0.1:$port$path" |
    awk '/ requests in /{print $1}')
  callgrind_control -d "$SERVER_PID" > /dev/null
  sleep 1
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  local total
  total=$(callgrind_annotate "$WORK"/cg.out.*.1 2>/dev/null |
    awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1}')
  RESULT=$((total / requests))
}

{
  echo "User-space instructions per request (callgrind, ${DURATION} s of wrk -c4 each)"
  printf '%-26s %12s %12s %8s\n' scenario nginx vigil "vigil/nginx"
} | tee "$OUT"
for scenario in $SCENARIOS; do
  case $scenario in
    proxied) path=/api/hello ;;
    static) path=/1k.txt ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
  for logs in 0 1; do
    nginx_conf "$logs" > "$WORK/nginx.conf"
    vigil_conf "$logs" > "$WORK/vigil.toml"
    count nginx "$NGINX_PORT" "$path" nginx -c "$WORK/nginx.conf"
    n=$RESULT
    count vigil "$VIGIL_PORT" "$path" "$VIGIL" run -c "$WORK/vigil.toml"
    v=$RESULT
    label="$scenario, logs $([ "$logs" = 1 ] && echo "to a file" || echo off)"
    printf '%-26s %12d %12d %8.2f\n' "$label" "$n" "$v" \
      "$(echo "$v $n" | awk '{print $1 / $2}')" | tee -a "$OUT"
  done
done
