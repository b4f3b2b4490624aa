#!/usr/bin/env bash
# Proxy benchmark: vigil vs nginx on the same machine, same run, same
# backend, equivalent configs. Prints req/s, p50/p99 latency and RSS for
# both and the ratio vigil/nginx for:
#   (a) a proxied small response over keep-alive,
#   (b) a 1 KiB static file,
#   (c) a 1 MiB static file,
#   (d) (a) over HTTPS (keep-alive), when certs can be made.
#
# Usage: bench/proxy.sh [seconds-per-run]   (default 10; ROUNDS=3 runs of
#        each server per scenario, alternating; medians are printed)
# Environment: CONNECTIONS (64), THREADS (2), PORT_BASE (19100).
# Needs: nginx, wrk (installed with apt-get if missing), cargo.
set -euo pipefail

DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/vigil-bench.XXXXXX)
# mktemp makes it 0700; nginx workers run as nobody and must reach www/.
chmod 755 "$WORK"
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx-proxy.pid" ] && kill "$(cat "$WORK/nginx-proxy.pid")" 2>/dev/null || true
  [ -f "$WORK/nginx-backend.pid" ] && kill "$(cat "$WORK/nginx-backend.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  echo "installing nginx and wrk..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk >/dev/null
fi
NGINX=$(command -v nginx)

echo "building vigil (release)..." >&2
(cd "$ROOT" && cargo build --release -q)
VIGIL="$ROOT/target/release/vigil"

# Ports (loopback only); PORT_BASE moves them when another run holds them.
PORT_BASE=${PORT_BASE:-19100}
BACKEND=$((PORT_BASE + 1)); NGINX_HTTP=$((PORT_BASE + 2)); VIGIL_HTTP=$((PORT_BASE + 3))
NGINX_TLS=$((PORT_BASE + 4)); VIGIL_TLS=$((PORT_BASE + 5))

mkdir -p "$WORK/www" "$WORK/logs"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$WORK/www/1k.txt"
head -c 1048576 /dev/urandom > "$WORK/www/1m.bin"

TLS=0
if [ -x "$ROOT/certs/make-dev-certs.sh" ]; then
  if "$ROOT/certs/make-dev-certs.sh" "$WORK/certs" >/dev/null 2>&1; then TLS=1; fi
fi

# Backend: nginx, one worker, answering a small fixed body.
cat > "$WORK/backend.conf" <<CONF
worker_processes 1;
pid $WORK/nginx-backend.pid;
error_log $WORK/logs/backend-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$BACKEND;
    location / { return 200 "hello from the backend\n"; }
  }
}
CONF

TLS_NGINX=""
TLS_VIGIL=""
if [ "$TLS" = 1 ]; then
TLS_NGINX="
  server {
    listen 127.0.0.1:$NGINX_TLS ssl http2;
    ssl_certificate $WORK/certs/localhost.pem;
    ssl_certificate_key $WORK/certs/localhost-key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location /api/ { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Real-IP \$remote_addr; }
  }"
TLS_VIGIL="
[[server]]
listen = [\"127.0.0.1:$VIGIL_TLS\"]
tls = { cert = \"$WORK/certs/localhost.pem\", key = \"$WORK/certs/localhost-key.pem\" }
  [[server.location]]
  path = \"/api/\"
  proxy_pass = \"app\""
fi

# nginx as the proxy: worker_processes auto (one per core), upstream
# keep-alive, the forwarding headers vigil adds by default.
cat > "$WORK/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx-proxy.pid;
error_log $WORK/logs/nginx-error.log;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  etag on;
  upstream app { server 127.0.0.1:$BACKEND; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_HTTP;
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
  $TLS_NGINX
}
CONF

cat > "$WORK/vigil.toml" <<CONF
[log]
access_log = "off"
level = "warn"

[[server]]
listen = ["127.0.0.1:$VIGIL_HTTP"]
root = "$WORK/www"
  [[server.location]]
  path = "/api/"
  proxy_pass = "app"
  [[server.location]]
  path = "/"

[upstream.app]
keepalive = 64
servers = [{ addr = "127.0.0.1:$BACKEND" }]
$TLS_VIGIL
CONF

"$NGINX" -c "$WORK/backend.conf"
"$NGINX" -c "$WORK/nginx.conf"
"$VIGIL" run -c "$WORK/vigil.toml" > "$WORK/logs/vigil.out" 2>&1 &
VIGIL_PID=$!
PIDS+=("$VIGIL_PID")
sleep 1
for port in $BACKEND $NGINX_HTTP $VIGIL_HTTP; do
  curl -sf -o /dev/null "http://127.0.0.1:$port/api/x" || { echo "port $port is not answering" >&2; cat "$WORK/logs/"* >&2; exit 1; }
done
if [ "$TLS" = 1 ]; then
  for port in $NGINX_TLS $VIGIL_TLS; do
    curl -sf --cacert "$WORK/certs/ca.pem" -o /dev/null "https://localhost:$port/api/x" \
      || { echo "port $port is not answering over TLS" >&2; cat "$WORK/logs/"* >&2; exit 1; }
  done
fi

rss_kb() { # sum of RSS of a process and its children
  local total=0 pid
  for pid in "$@" $(pgrep -P "$(echo "$@" | tr ' ' ',')" 2>/dev/null || true); do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# wrk's --latency output → "req/s p50_ms p99_ms"
run_wrk() {
  local url=$1
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v/1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v } if (v ~ /s$/) { sub(/s$/, "", v); return v*1000 } return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx|Socket errors/ { err = err " " $0 }
    END { printf "%s %s %s%s\n", rps, p50, p99, (err ? " ERR" err : "") }'
}

NGINX_MASTER=$(cat "$WORK/nginx-proxy.pid")
printf "\nvigil %s vs nginx %s — %s rounds of %ss per server and scenario, %s connections, %s wrk threads, %s cores, load average %s\n" \
  "$("$VIGIL" --version | awk '{print $2}')" "$("$NGINX" -v 2>&1 | sed 's|.*/||')" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$THREADS" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)"
printf "%-28s %12s %9s %9s %9s | %12s %9s %9s %9s | %7s %7s %7s\n" \
  scenario "nginx req/s" "p50 ms" "p99 ms" "RSS MiB" "vigil req/s" "p50 ms" "p99 ms" "RSS MiB" "req/s×" "p99×" "RSS×"

# One scenario: ROUNDS alternating runs (nginx, vigil, nginx, vigil...)
# so that load from anything else on the machine hits both alike; the
# median of each column is printed. RSS is read after each run (peak of
# the runs).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
scenario() {
  local name=$1 path=$2 nport=$3 vport=$4 scheme=${5:-http}
  local n_out="" v_out="" n_rss=0 v_rss=0 r line n_err="" v_err=""
  wrk -t1 -c4 -d1s "$scheme://127.0.0.1:$nport$path" >/dev/null 2>&1 || true   # warm up
  wrk -t1 -c4 -d1s "$scheme://127.0.0.1:$vport$path" >/dev/null 2>&1 || true
  for r in $(seq 1 "$ROUNDS"); do
    line=$(run_wrk "$scheme://127.0.0.1:$nport$path"); n_out+="$line"$'\n'
    [[ "$line" == *ERR* ]] && n_err="${line#* ERR}"
    n_rss=$(( $(rss_kb "$NGINX_MASTER") > n_rss ? $(rss_kb "$NGINX_MASTER") : n_rss ))
    line=$(run_wrk "$scheme://127.0.0.1:$vport$path"); v_out+="$line"$'\n'
    [[ "$line" == *ERR* ]] && v_err="${line#* ERR}"
    v_rss=$(( $(rss_kb "$VIGIL_PID") > v_rss ? $(rss_kb "$VIGIL_PID") : v_rss ))
  done
  local n_rps n_p50 n_p99 v_rps v_p50 v_p99
  n_rps=$(printf "%s" "$n_out" | awk 'NF {print $1}' | median)
  n_p50=$(printf "%s" "$n_out" | awk 'NF {print $2}' | median)
  n_p99=$(printf "%s" "$n_out" | awk 'NF {print $3}' | median)
  v_rps=$(printf "%s" "$v_out" | awk 'NF {print $1}' | median)
  v_p50=$(printf "%s" "$v_out" | awk 'NF {print $2}' | median)
  v_p99=$(printf "%s" "$v_out" | awk 'NF {print $3}' | median)
  awk -v name="$name" -v nr="$n_rps" -v n50="$n_p50" -v n99="$n_p99" -v nm="$n_rss" \
      -v vr="$v_rps" -v v50="$v_p50" -v v99="$v_p99" -v vm="$v_rss" 'BEGIN {
    printf "%-28s %12.0f %9.2f %9.2f %9.1f | %12.0f %9.2f %9.2f %9.1f | %7.2f %7.2f %7.2f\n",
      name, nr, n50, n99, nm/1024, vr, v50, v99, vm/1024, vr/nr, v99/n99, vm/nm }'
  [ -n "${n_err:-}" ] && echo "  nginx errors: $n_err"
  [ -n "${v_err:-}" ] && echo "  vigil errors: $v_err"
  return 0
}

scenario "(a) proxied, keep-alive" /api/hello $NGINX_HTTP $VIGIL_HTTP
scenario "(b) static 1 KiB" /1k.txt $NGINX_HTTP $VIGIL_HTTP
scenario "(c) static 1 MiB" /1m.bin $NGINX_HTTP $VIGIL_HTTP
if [ "$TLS" = 1 ]; then
  scenario "(d) HTTPS proxied, keep-alive" /api/hello $NGINX_TLS $VIGIL_TLS https
fi
echo
echo "ratios: vigil/nginx (req/s× above 1 = vigil faster; p99× and RSS× below 1 = vigil better)"
