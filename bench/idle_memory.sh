#!/usr/bin/env bash
# Memory per idle keep-alive connection, vigil vs nginx in the same run
# (issue 13): COUNT connections each send one proxied request and stay
# open; RSS is read before, with them all open, and 6 s after they
# closed, for ROUNDS rounds (memory must come back every round).
#
# Usage: bench/idle_memory.sh [count]   (default 10000; ROUNDS=3)
# Needs: nginx, python3, cargo. Bounded: each round holds the
# connections for HOLD (30) seconds; RSS "open" is read 2 s before they
# close. The client opens them over up to 20 s (about 550 a second on 2
# busy cores), so that all of them are idle by then: vigil parks an idle
# connection after 1-2 s and trims the heap every 2 s; nginx frees an
# idle connection's buffers at once.
set -euo pipefail
COUNT=${1:-10000}
ROUNDS=${ROUNDS:-3}
HOLD=${HOLD:-30}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/vigil-idle.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in nginx-proxy nginx-backend; do
    [ -f "$WORK/$f.pid" ] && kill "$(cat "$WORK/$f.pid")" 2>/dev/null || true
  done
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v nginx >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null
NGINX=$(command -v nginx)
(cd "$ROOT" && cargo build --release -q)
VIGIL="$ROOT/target/release/vigil"
PORT_BASE=${PORT_BASE:-19400}
B=$((PORT_BASE + 1)); NGINX_P=$((PORT_BASE + 2)); VIGIL_P=$((PORT_BASE + 3))
mkdir -p "$WORK/logs"
LIMIT=$((COUNT + 2048)); HARD=$(ulimit -Hn); [ "$HARD" != unlimited ] && [ "$LIMIT" -gt "$HARD" ] && LIMIT=$HARD
cat > "$WORK/backend.conf" <<CONF
worker_processes 1;
pid $WORK/nginx-backend.pid;
error_log $WORK/logs/backend-error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$B; location / { return 200 "hello\n"; } } }
CONF
cat > "$WORK/nginx.conf" <<CONF
worker_processes auto;
worker_rlimit_nofile $LIMIT;
pid $WORK/nginx-proxy.pid;
error_log $WORK/logs/nginx-error.log crit;
events { worker_connections $LIMIT; }
http {
  access_log off;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$B; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_P;
    location /api/ { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
cat > "$WORK/vigil.toml" <<CONF
[log]
access_log = "off"
level = "error"
[http]
max_connections = $LIMIT
[[server]]
listen = ["127.0.0.1:$VIGIL_P"]
  [[server.location]]
  path = "/api/"
  proxy_pass = "app"
[upstream.app]
servers = [{ addr = "127.0.0.1:$B" }]
CONF
ulimit -n "$LIMIT"
"$NGINX" -c "$WORK/backend.conf"
"$NGINX" -c "$WORK/nginx.conf"
"$VIGIL" run -c "$WORK/vigil.toml" > "$WORK/logs/vigil.out" 2>&1 &
VIGIL_PID=$!; PIDS+=("$VIGIL_PID")
sleep 1
NGINX_MASTER=$(cat "$WORK/nginx-proxy.pid")
rss_kb() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo "$t"; }
procs() { if [ "$1" = nginx ]; then echo "$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')"; else echo "$VIGIL_PID"; fi; }
printf "\n%s idle keep-alive connections, %s rounds (RSS in MiB; per-connection in KiB)\n" "$COUNT" "$ROUNDS"
printf "%-6s %5s | %8s %8s %8s %8s\n" server round before open after "KiB/conn"
for round in $(seq 1 "$ROUNDS"); do
  for server in nginx vigil; do
    if [ "$server" = nginx ]; then port=$NGINX_P; else port=$VIGIL_P; fi
    before=$(rss_kb $(procs $server))
    python3 "$ROOT/bench/hostile_attack.py" idle-keepalive 127.0.0.1 "$port" "$COUNT" "$HOLD" > /dev/null &
    attacker=$!
    sleep $((HOLD - 2))
    open=$(rss_kb $(procs $server))
    wait "$attacker" || true
    sleep 6
    after=$(rss_kb $(procs $server))
    awk -v s=$server -v r=$round -v b=$before -v o=$open -v a=$after -v n=$COUNT \
      'BEGIN { printf "%-6s %5d | %8.1f %8.1f %8.1f %8.1f\n", s, r, b/1024, o/1024, a/1024, (o-b)/n }'
  done
done
