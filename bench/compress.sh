#!/usr/bin/env bash
# Compression benchmark: vigil vs nginx (`gzip on`, same level, same
# types), both proxying the same nginx backend that serves an
# uncompressed JSON document, in the same run. For each server it prints
# the server's own CPU time per compressed response (utime + stime of its
# processes from /proc/PID/stat, divided by the responses wrk completed:
# steadier than req/s on a shared machine), req/s, and the bytes on the
# wire per response against the original size. vigil's brotli and zstd
# are measured too (nginx-light has neither module).
#
# Usage: bench/compress.sh [seconds-per-run]   (default 10; ROUNDS=3
#        alternating runs per server, medians printed)
# Environment: LEVEL (gzip level, 6), CONNECTIONS (16), THREADS (2),
#              PORT_BASE (19300), SIZE (JSON document bytes, ~64k).
# Needs: nginx (nginx-light), wrk, curl (installed with apt-get if
# missing), cargo.
set -euo pipefail

DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
LEVEL=${LEVEL:-6}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
SIZE=${SIZE:-65536}
PORT_BASE=${PORT_BASE:-19300}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/vigil-compress.XXXXXX)
chmod 755 "$WORK"
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$WORK"/nginx-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk || ! need curl; then
  echo "installing nginx-light, wrk and curl..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk curl >/dev/null
fi

echo "building vigil (release)..." >&2
(cd "$ROOT" && cargo build --release -q --bin vigil)
VIGIL="$ROOT/target/release/vigil"

BACKEND=$((PORT_BASE + 1))
NGINX_PORT=$((PORT_BASE + 2))
VIGIL_PORT=$((PORT_BASE + 3))

# A JSON document like an API's: repetitive keys, varied values.
mkdir -p "$WORK/www" "$WORK/logs"
python3 - "$SIZE" > "$WORK/www/data.json" <<'PY'
import json, random, sys
random.seed(7)
size, items, n = int(sys.argv[1]), [], 0
while len(json.dumps(items)) < size:
    n += 1
    items.append({"id": n, "name": f"user {random.randint(1, 10**6)}",
                  "email": f"u{random.randint(1, 10**9)}@example.com",
                  "active": random.random() < 0.5,
                  "score": round(random.random() * 1000, 3),
                  "tags": random.sample(["red", "green", "blue", "admin", "beta", "new"], 3)})
print(json.dumps(items))
PY
ORIGINAL=$(stat -c %s "$WORK/www/data.json")

cat > "$WORK/backend.conf" <<CONF
worker_processes 1;
pid $WORK/nginx-backend.pid;
error_log $WORK/logs/backend-error.log;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND; root $WORK/www; }
}
CONF

cat > "$WORK/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx-proxy.pid;
error_log $WORK/logs/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  gzip on;
  gzip_comp_level $LEVEL;
  gzip_types application/json;
  gzip_proxied any;
  gzip_vary on;
  upstream app { server 127.0.0.1:$BACKEND; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF

cat > "$WORK/vigil.toml" <<CONF
[log]
access_log = "off"

[http]
gzip = true
gzip_comp_level = $LEVEL
gzip_types = ["application/json"]
brotli = true
brotli_comp_level = ${BROTLI_LEVEL:-4}
zstd = true
zstd_comp_level = ${ZSTD_LEVEL:-3}

[[server]]
listen = ["127.0.0.1:$VIGIL_PORT"]

  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
servers = [{ addr = "127.0.0.1:$BACKEND" }]
keepalive = 64
CONF

nginx -c "$WORK/backend.conf"
nginx -c "$WORK/nginx.conf"
"$VIGIL" run -c "$WORK/vigil.toml" > "$WORK/logs/vigil.log" 2>&1 &
VIGIL_PID=$!
PIDS+=("$VIGIL_PID")
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$VIGIL_PORT/data.json" -o /dev/null && \
    curl -sf "http://127.0.0.1:$NGINX_PORT/data.json" -o /dev/null && break
  sleep 0.1
done
NGINX_PID=$(cat "$WORK/nginx-proxy.pid")

family() { echo "$1" $(pgrep -P "$1" 2>/dev/null || true); }
cpu_ticks() {
  local total=0 pid
  for pid in $(family "$1"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
TICK=$(getconf CLK_TCK)
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# One wrk run → "req/s cpu_us_per_response"
run_wrk() { # url pid accept-encoding
  local before after out
  before=$(cpu_ticks "$2")
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -H "Accept-Encoding: $3" "$1" 2>/dev/null)
  after=$(cpu_ticks "$2")
  printf "%s\n" "$out" | awk -v ticks=$((after - before)) -v hz="$TICK" '
    / requests in / { n = $1 }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx|Socket errors/ { err = err " " $0 }
    END { printf "%s %s%s\n", rps, (n ? ticks / hz * 1e6 / n : 0), (err ? " ERR" err : "") }'
}

wire_bytes() { # url accept-encoding → bytes of the body on the wire
  curl -s -H "Accept-Encoding: $2" "$1" | wc -c
}

# Check each server really compresses (and the bytes decode to the file).
for url in "http://127.0.0.1:$NGINX_PORT/data.json" "http://127.0.0.1:$VIGIL_PORT/data.json"; do
  curl -s --compressed "$url" | cmp -s - "$WORK/www/data.json" \
    || { echo "$url does not decode to the document" >&2; exit 1; }
done

printf "\ncompression: vigil %s vs nginx %s, gzip level %s, %s-byte JSON, %s rounds of %ss, %s connections, %s cores, load average %s\n" \
  "$("$VIGIL" --version | awk '{print $2}')" "$(nginx -v 2>&1 | sed 's/.*nginx\///')" "$LEVEL" "$ORIGINAL" \
  "$ROUNDS" "$DURATION" "$CONNECTIONS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-22s %10s %16s %12s %8s\n" "server / coding" "req/s" "CPU µs/response" "wire bytes" "saved"
declare -A out
for round in $(seq "$ROUNDS"); do
  out[nginx-gzip]+="$(run_wrk "http://127.0.0.1:$NGINX_PORT/data.json" "$NGINX_PID" gzip)"$'\n'
  out[vigil-gzip]+="$(run_wrk "http://127.0.0.1:$VIGIL_PORT/data.json" "$VIGIL_PID" gzip)"$'\n'
  out[vigil-br]+="$(run_wrk "http://127.0.0.1:$VIGIL_PORT/data.json" "$VIGIL_PID" br)"$'\n'
  out[vigil-zstd]+="$(run_wrk "http://127.0.0.1:$VIGIL_PORT/data.json" "$VIGIL_PID" zstd)"$'\n'
  out[nginx-identity]+="$(run_wrk "http://127.0.0.1:$NGINX_PORT/data.json" "$NGINX_PID" identity)"$'\n'
  out[vigil-identity]+="$(run_wrk "http://127.0.0.1:$VIGIL_PORT/data.json" "$VIGIL_PID" identity)"$'\n'
done
for key in nginx-identity vigil-identity nginx-gzip vigil-gzip vigil-br vigil-zstd; do
  server=${key%%-*}
  coding=${key#*-}
  port=$NGINX_PORT
  [ "$server" = vigil ] && port=$VIGIL_PORT
  rps=$(printf "%s" "${out[$key]}" | awk 'NF {print $1}' | median)
  cpu=$(printf "%s" "${out[$key]}" | awk 'NF {print $2}' | median)
  bytes=$(wire_bytes "http://127.0.0.1:$port/data.json" "$coding")
  printf "%-22s %10.0f %16.1f %12d %7.1f%%\n" "$server $coding" "$rps" "$cpu" "$bytes" \
    "$(awk -v b="$bytes" -v o="$ORIGINAL" 'BEGIN { print (1 - b / o) * 100 }')"
  grep -q ERR <<<"${out[$key]}" && echo "  errors: $(grep ERR <<<"${out[$key]}" | head -1)"
done
echo "(vigil brotli level ${BROTLI_LEVEL:-4}, zstd level ${ZSTD_LEVEL:-3}; wrk and the backend share the cores)"
