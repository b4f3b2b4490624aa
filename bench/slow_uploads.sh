#!/usr/bin/env bash
# Slow uploads (issue 13, item 4): N clients each upload BYTES at RATE
# bytes/s (starting one after another over one upload's duration, so
# about N are in progress at once) through nginx and through vigil, in the same run, with the same
# settings (proxy read timeout 5 s, as in the issue's probe, shorter than
# each upload). Printed per proxy: uploads answered 200, the slowest, the
# connections the backend accepted and the most it had open at once, and
# the proxy's CPU time (/proc/PID/stat). As deployed: access logs on (to a
# file) for both; the same 64 KiB held in memory before a body goes to
# disk (vigil's default; nginx's is 16k).
#
# Both proxies read the body whole before passing it on (nginx's
# proxy_request_buffering on, vigil's request_buffering default): neither
# should need more than a handful of backend connections. A third row,
# "vigil-s", is vigil with request_buffering = false (streaming, as vigil
# did for bodies over 64 KiB before): one backend connection per upload.
#
# Usage: bench/slow_uploads.sh [N] [BYTES] [RATE]   (default 200 1200000 102400:
#        about 24 s per proxy; stops by itself)
# Environment: PORT_BASE (19600). Needs: nginx, python3, cargo.
set -euo pipefail

N=${1:-200}
BYTES=${2:-1200000}
RATE=${3:-102400}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/vigil-uploads.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v nginx >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null
NGINX=$(command -v nginx)
echo "building vigil (release)..." >&2
(cd "$ROOT" && cargo build --release -q)
VIGIL="$ROOT/target/release/vigil"
PY="$ROOT/bench/slow_uploads.py"

PORT_BASE=${PORT_BASE:-19600}
BACKEND=$((PORT_BASE + 1)); NGINX_P=$((PORT_BASE + 2)); VIGIL_P=$((PORT_BASE + 3))
STREAM_P=$((PORT_BASE + 4))
mkdir -p "$WORK/body"

cat > "$WORK/nginx.conf" <<CONF
worker_processes auto;
worker_rlimit_nofile 16384;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log crit;
events { worker_connections 8192; }
http {
  access_log $WORK/nginx-access.log combined;
  client_max_body_size 0;
  client_body_buffer_size 64k;
  client_body_temp_path $WORK/body;
  upstream app { server 127.0.0.1:$BACKEND; keepalive 32; }
  server {
    listen 127.0.0.1:$NGINX_P;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 5s;
    }
  }
}
CONF

cat > "$WORK/vigil.toml" <<CONF
[log]
access_log = "$WORK/vigil-access.log"
level = "error"

[http]
client_max_body_size = "0"
client_body_temp_path = "$WORK/body"

[[server]]
listen = ["127.0.0.1:$VIGIL_P"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"

[[server]]
listen = ["127.0.0.1:$STREAM_P"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"
  request_buffering = false

[upstream.app]
keepalive = 32
read_timeout = "5s"
servers = [{ addr = "127.0.0.1:$BACKEND" }]
CONF

ulimit -n 16384
"$NGINX" -c "$WORK/nginx.conf"
"$VIGIL" run -c "$WORK/vigil.toml" > "$WORK/vigil.out" 2>&1 &
VIGIL_PID=$!
PIDS+=("$VIGIL_PID")
sleep 1
NGINX_MASTER=$(cat "$WORK/nginx.pid")
HZ=$(getconf CLK_TCK)
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0))); done
  echo "$total"
}

printf "\n%s uploads of %s bytes at %s bytes/s, vigil %s vs nginx %s, %s cores\n" \
  "$N" "$BYTES" "$RATE" "$("$VIGIL" --version | awk '{print $2}')" "$("$NGINX" -v 2>&1 | sed 's|.*/||')" "$(nproc)"
printf "%-7s | %9s %10s | %16s %14s | %6s\n" proxy "200s" "slowest s" "backend conns" "peak open" "CPU s"
for server in nginx vigil vigil-s; do
  case $server in
    nginx) port=$NGINX_P; procs="$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')" ;;
    vigil) port=$VIGIL_P; procs=$VIGIL_PID ;;
    vigil-s) port=$STREAM_P; procs=$VIGIL_PID ;;
  esac
  python3 "$PY" backend "$BACKEND" > "$WORK/backend-$server.out" &
  backend=$!
  sleep 0.5
  before=$(cpu_ticks $procs)
  read -r ok slowest < <(python3 "$PY" client "$port" "$N" "$BYTES" "$RATE")
  after=$(cpu_ticks $procs)
  kill -TERM "$backend"; wait "$backend" || true
  read -r accepted peak _requests < "$WORK/backend-$server.out"
  printf "%-7s | %5s/%-3s %10s | %16s %14s | %6s\n" "$server" "$ok" "$N" "$slowest" "$accepted" "$peak" \
    "$(awk -v t=$((after - before)) -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')"
done
leftover=$(find "$WORK/body" -type f | wc -l)
echo "files left in the body directories: $leftover"
