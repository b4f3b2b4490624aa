#!/usr/bin/env bash
# Hostile-client benchmark (issue 13): vigil vs nginx in the same run, same
# backends, equivalent settings. For each attack, a normal client (wrk,
# keep-alive, 4 connections) measures its success rate and p99 while
# bench/hostile_attack.py attacks; the attacked server's CPU time comes
# from /proc/PID/stat. Attacks:
#   slowloris: 1,000 slow-header + 1,000 slow-body connections;
#   5,000 silent connections (more than the servers' fd limit:
#     fd exhaustion at ulimit -n $NOFILE);
#   h2 SETTINGS, PING, rapid-reset and CONTINUATION floods (h2c, prior
#     knowledge), $FLOODERS connections each;
#   malformed-body (bad chunk size) ejection attempts against a
#     two-server pool with max_fails = 1.
# Afterwards it checks that no upstream server was taken out. Both servers
# log every request to a file (nginx `combined`, vigil's default format
# and buffering), as deployed.
#
# Per attack and server it prints the normal client's success rate, p99
# and requests served, the server's CPU seconds (normal traffic
# included), and the attack script's own CPU seconds.
#
# Two controls follow, since on a small shared machine the p99s measure
# the cores as much as the servers:
#   - "CPU burner": no attack, a busy loop (no network at all) taking
#     10 % of one core while the normal client measures. Whatever p99 a
#     server shows here, no attack can be expected to beat.
#   - "flood alone": each h2 flood with no normal client, so the
#     server's CPU is the flood's own cost.
#
# Usage: bench/hostile.sh [seconds-per-attack]   (default 12; the whole
#        run takes about 2 × 14 × that, and stops by itself)
# Environment: NOFILE (4096), FLOODERS (4), PORT_BASE (19300),
#              ATTACKS (space-separated modes to run, default all).
# Needs: nginx, wrk, python3 (installed with apt-get if missing), cargo.
set -euo pipefail

DURATION=${1:-12}
NOFILE=${NOFILE:-4096}
FLOODERS=${FLOODERS:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/vigil-hostile.XXXXXX)
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

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk || ! need python3; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk python3 >/dev/null
fi
NGINX=$(command -v nginx)
echo "building vigil (release)..." >&2
(cd "$ROOT" && cargo build --release -q)
VIGIL="$ROOT/target/release/vigil"
ATTACK="$ROOT/bench/hostile_attack.py"

PORT_BASE=${PORT_BASE:-19300}
B1=$((PORT_BASE + 1)); B2=$((PORT_BASE + 2)); NGINX_P=$((PORT_BASE + 3)); VIGIL_P=$((PORT_BASE + 4))
ADMIN=$((PORT_BASE + 5)); NGINX_H2=$((PORT_BASE + 6))
mkdir -p "$WORK/logs"

# Two backends (one nginx, two ports); /api/echo swallows bodies.
cat > "$WORK/backend.conf" <<CONF
worker_processes 1;
pid $WORK/nginx-backend.pid;
error_log $WORK/logs/backend-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_max_body_size 0;
  server {
    listen 127.0.0.1:$B1;
    listen 127.0.0.1:$B2;
    location / { return 200 "hello from the backend\n"; }
  }
}
CONF

# Equivalent settings: 10 s header/body timeouts, two servers with
# max_fails=1 fail_timeout=10s, 60 s read timeout, h2c.
cat > "$WORK/nginx.conf" <<CONF
worker_processes auto;
worker_rlimit_nofile $NOFILE;
pid $WORK/nginx-proxy.pid;
error_log $WORK/logs/nginx-error.log crit;
events { worker_connections 16384; }
http {
  access_log $WORK/logs/nginx-access.log combined;
  keepalive_requests 1000000;
  client_header_timeout 10s;
  client_body_timeout 10s;
  upstream app {
    server 127.0.0.1:$B1 max_fails=1 fail_timeout=10s;
    server 127.0.0.1:$B2 max_fails=1 fail_timeout=10s;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$NGINX_P;
    # nginx 1.22 does not tell h2c from HTTP/1 on one cleartext port
    # (vigil does): the floods go to a second port of the same server.
    listen 127.0.0.1:$NGINX_H2 http2;
    location /api/ {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
}
CONF

cat > "$WORK/vigil.toml" <<CONF
[log]
access_log = "$WORK/logs/vigil-access.log"
level = "error"

[http]
client_header_timeout = "10s"
client_body_timeout = "10s"
max_connections = 16384

[admin]
listen = "127.0.0.1:$ADMIN"

[[server]]
listen = ["127.0.0.1:$VIGIL_P"]
  [[server.location]]
  path = "/api/"
  proxy_pass = "app"

[upstream.app]
keepalive = 64
servers = [
  { addr = "127.0.0.1:$B1", max_fails = 1, fail_timeout = "10s" },
  { addr = "127.0.0.1:$B2", max_fails = 1, fail_timeout = "10s" },
]
CONF

"$NGINX" -c "$WORK/backend.conf"
(ulimit -n "$NOFILE"; exec "$NGINX" -c "$WORK/nginx.conf")
(ulimit -n "$NOFILE"; exec "$VIGIL" run -c "$WORK/vigil.toml") > "$WORK/logs/vigil.out" 2>&1 &
VIGIL_PID=$!
PIDS+=("$VIGIL_PID")
sleep 1
for port in $NGINX_P $VIGIL_P; do
  curl -sf -o /dev/null "http://127.0.0.1:$port/api/x" || { echo "port $port is not answering" >&2; cat "$WORK/logs/"* >&2; exit 1; }
done
NGINX_MASTER=$(cat "$WORK/nginx-proxy.pid")

cpu_ticks() { # utime + stime of the processes, in clock ticks
  local total=0 pid
  for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0))); done
  echo "$total"
}
procs_of() { # nginx: master + workers; vigil: the process
  if [ "$1" = nginx ]; then echo "$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')"; else echo "$VIGIL_PID"; fi
}
# wrk → "success% p99_ms requests"
normal_client() {
  wrk -t1 -c4 -d"$1s" --timeout 5s --latency "http://127.0.0.1:$2/api/x" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v/1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v } if (v ~ /s$/) { sub(/s$/, "", v); return v*1000 } return v }
    /^ +99%/ { p99 = ms($2) }
    / requests in / { n = $1 }
    /Non-2xx/ { bad += $NF }
    /Socket errors/ { gsub(",", ""); conn = $4; bad += $6 + $8 + $10 }
    END { total = n + conn; if (total == 0) { print "0.00 - 0"; exit } printf "%.2f %s %d\n", 100 * (n - bad) / total, (p99 == "" ? "-" : p99), n }'
}
HZ=$(getconf CLK_TCK)

printf "\nvigil %s vs nginx %s — %ss per attack, ulimit -n %s, %s cores, load average %s\n" \
  "$("$VIGIL" --version | awk '{print $2}')" "$("$NGINX" -v 2>&1 | sed 's|.*/||')" "$DURATION" "$NOFILE" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)"
printf "%-26s | %8s %8s %7s %6s | %8s %8s %7s %6s | %s\n" attack \
  "nginx ok%" "p99 ms" "req" "CPU s" "vigil ok%" "p99 ms" "req" "CPU s" "attacker CPU s"

wanted() { [ -z "${ATTACKS:-}" ] || [[ " $ATTACKS " == *" $1 "* ]]; }
target_port() { # server mode
  if [ "$1" = nginx ]; then
    if [ "${2#h2-}" != "$2" ]; then echo "$NGINX_H2"; else echo "$NGINX_P"; fi
  else
    echo "$VIGIL_P"
  fi
}
seconds() { awk -v t="$1" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }'; }
attacker_cpu() { sed -n 's/.* cpu=\([0-9.]*\).*/\1/p' "$1" | tail -1; }

run_attack() { # name mode count
  local name=$1 mode=$2 count=$3 server port procs before after line cols=() atk=()
  if [ "$mode" != none ] && [ "$mode" != burner ] && ! wanted "$mode"; then return; fi
  for server in nginx vigil; do
    if [ "$server" = nginx ]; then port=$NGINX_P; else port=$VIGIL_P; fi
    procs=$(procs_of "$server")
    before=$(cpu_ticks $procs)
    case $mode in
      none) line=$(normal_client "$DURATION" "$port"); atk+=(-) ;;
      burner)
        python3 -c 'import sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    t = time.monotonic()
    while time.monotonic() - t < 0.001: pass
    time.sleep(0.009)' "$DURATION" &
        sleep 2
        line=$(normal_client $((DURATION - 3)) "$port")
        wait $! || true
        atk+=(-) ;;
      *)
        python3 "$ATTACK" "$mode" 127.0.0.1 "$(target_port "$server" "$mode")" "$count" "$DURATION" > "$WORK/attack-$server-$mode.out" 2>&1 &
        sleep 2
        line=$(normal_client $((DURATION - 3)) "$port")
        wait $! || true
        atk+=("$(attacker_cpu "$WORK/attack-$server-$mode.out")") ;;
    esac
    after=$(cpu_ticks $procs)
    set -- $line # ok% p99 requests
    cols+=("$1" "$2" "$3" "$(seconds $((after - before)))")
    sleep 2
  done
  printf "%-26s | %8s %8s %7s %6s | %8s %8s %7s %6s | %s / %s\n" "$name" "${cols[@]}" "${atk[0]}" "${atk[1]}"
}

# An h2 flood with no normal traffic: the server's CPU is the flood's.
flood_alone() { # name mode
  local name=$1 mode=$2 server procs before after cols=()
  wanted "$mode" || return 0
  for server in nginx vigil; do
    procs=$(procs_of "$server")
    before=$(cpu_ticks $procs)
    python3 "$ATTACK" "$mode" 127.0.0.1 "$(target_port "$server" "$mode")" "$FLOODERS" "$DURATION" > "$WORK/alone-$server-$mode.out" 2>&1 || true
    after=$(cpu_ticks $procs)
    cols+=("$(seconds $((after - before)))" "$(attacker_cpu "$WORK/alone-$server-$mode.out")")
    sleep 2
  done
  printf "%-26s | %12s %12s | %12s %12s\n" "$name" "${cols[@]}"
}

run_attack "none (baseline)" none 0
run_attack "CPU burner, 10 % of a core" burner 0
run_attack "slowloris 1000 headers" slow-header 1000
run_attack "slowloris 1000 bodies" slow-body 1000
run_attack "5000 silent (fd limit)" silent 5000
run_attack "h2 SETTINGS flood" h2-settings "$FLOODERS"
run_attack "h2 PING flood" h2-ping "$FLOODERS"
run_attack "h2 rapid reset" h2-rapid-reset "$FLOODERS"
run_attack "h2 CONTINUATION flood" h2-continuation "$FLOODERS"
run_attack "bad-chunk ejection" bad-chunk 4

printf "\nflood alone (%s connections, %ss, no normal client)\n" "$FLOODERS" "$DURATION"
printf "%-26s | %12s %12s | %12s %12s\n" flood "nginx CPU s" "attacker s" "vigil CPU s" "attacker s"
flood_alone "h2 SETTINGS flood" h2-settings
flood_alone "h2 PING flood" h2-ping
flood_alone "h2 rapid reset" h2-rapid-reset
flood_alone "h2 CONTINUATION flood" h2-continuation

echo
for f in "$WORK"/attack-*.out; do printf "%s: %s\n" "$(basename "$f" .out)" "$(tail -1 "$f")"; done
up=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^vigil_upstream_server_up/ { s += $NF; n++ } END { printf "%d of %d", s, n }')
echo "vigil upstream servers up after the attacks: $up"
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -E '^vigil_(accept_errors|http2_flood_closed)_total' || true
