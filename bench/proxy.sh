#!/usr/bin/env bash
# Proxy benchmark: vigil vs nginx vs haproxy on the same machine, same run,
# same backend, equivalent configs, each with access logs off and with an
# access log to a file (each server's default way of logging: nginx
# `access_log FILE combined`, haproxy `option httplog` to a file, vigil
# `access_log = FILE`, default buffering). For each server and scenario it
# prints req/s, p99 latency, the server's own CPU time per request (utime +
# stime of its processes and threads from /proc/PID/stat, divided by the
# requests wrk completed: on 2 shared cores the steadier figure) and peak
# RSS, then the ratios vigil/nginx. Beside the server's own CPU it prints
# the whole machine's busy CPU time per request (/proc/stat: wrk, the
# backend and the server together): on loopback, where the kernel does
# the receiver's work is a matter of timing (a sender that fills whole
# segments, as `tcp_nopush` does, delivers them in its own system time),
# so the server's own figure can move without the machine's moving.
#   (a) a proxied small response over keep-alive      (all three)
#   (b) a 1 KiB static file                           (nginx, vigil)
#   (c) a 1 MiB static file                           (nginx, vigil)
#   (d) (a) over HTTPS, keep-alive, when certs can be made (all three)
#
# Usage: bench/proxy.sh [seconds-per-run]   (default 10; ROUNDS=3 runs of
#        each server per scenario, alternating; medians are printed)
# Environment: CONNECTIONS (64), THREADS (2), PORT_BASE (19100),
#              SCENARIOS ("a b c d", any subset), VIGIL_BIN (a vigil
#              binary to measure instead of building one), BUILD
#              ("release": the shipped, profile-guided build that
#              scripts/build-release makes, ~10 min on 2 cores; "plain":
#              `cargo build --release`).
# Needs: nginx, haproxy, wrk (installed with apt-get if missing), cargo.
set -euo pipefail

DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
SCENARIOS=${SCENARIOS:-"a b c d"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/vigil-bench.XXXXXX)
# mktemp makes it 0700; nginx workers run as nobody and must reach www/.
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
if ! need nginx || ! need wrk || ! need haproxy; then
  echo "installing nginx, haproxy and wrk..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light haproxy wrk >/dev/null
fi
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy)

if [ -n "${VIGIL_BIN:-}" ]; then
  VIGIL=$VIGIL_BIN
elif [ "${BUILD:-release}" = plain ]; then
  echo "building vigil (cargo build --release)..." >&2
  (cd "$ROOT" && cargo build --release -q --bin vigil)
  VIGIL="$ROOT/target/release/vigil"
else
  echo "building vigil as it ships (scripts/build-release: profile-guided)..." >&2
  "$ROOT/scripts/build-release"
  VIGIL="$ROOT/target/pgo-use/release/vigil"
fi

# Ports (loopback only); PORT_BASE moves them when another run holds them.
# Each server runs twice, logs off and logs on, so that its CPU time is its
# own; port = base + 10 * server + (logs ? 5 : 0) + {0: http, 1: https}.
PORT_BASE=${PORT_BASE:-19100}
BACKEND=$((PORT_BASE + 1))
port() { # server(nginx|haproxy|vigil) logs(0|1) tls(0|1)
  local s
  case $1 in nginx) s=1 ;; haproxy) s=2 ;; vigil) s=3 ;; esac
  echo $((PORT_BASE + 10 * s + 5 * $2 + $3))
}

mkdir -p "$WORK/www" "$WORK/logs"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$WORK/www/1k.txt"
head -c 1048576 /dev/urandom > "$WORK/www/1m.bin"

TLS=0
if [ -x "$ROOT/certs/make-dev-certs.sh" ]; then
  if "$ROOT/certs/make-dev-certs.sh" "$WORK/certs" >/dev/null 2>&1; then
    TLS=1
    cat "$WORK/certs/localhost.pem" "$WORK/certs/localhost-key.pem" > "$WORK/certs/haproxy.pem"
  fi
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

# nginx as the proxy: worker_processes auto (one per core), upstream
# keep-alive, the forwarding headers vigil adds by default.
nginx_conf() { # logs(0|1)
  local logs=$1 access="access_log off;" tls=""
  [ "$logs" = 1 ] && access="access_log $WORK/logs/nginx-access.log combined;"
  local locations="
    location /api/ {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP \$remote_addr;
    }
    location / { }"
  if [ "$TLS" = 1 ]; then
    tls="server {
    listen 127.0.0.1:$(port nginx "$logs" 1) ssl;
    ssl_certificate $WORK/certs/localhost.pem;
    ssl_certificate_key $WORK/certs/localhost-key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $WORK/www;
    $locations
  }"
  fi
  cat <<CONF
worker_processes auto;
pid $WORK/nginx-$logs.pid;
error_log $WORK/logs/nginx-error.log;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  $access
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  etag on;
  upstream app { server 127.0.0.1:$BACKEND; keepalive 64; }
  server {
    listen 127.0.0.1:$(port nginx "$logs" 0);
    root $WORK/www;
    $locations
  }
  $tls
}
CONF
}

# haproxy: one process, nbthread = cores (its default), keep-alive to the
# backend, X-Forwarded-For like the others. Logs go to stdout, which the
# script sends to a file: haproxy writes no files itself (its usual target
# is syslog, which would put the cost in another process).
haproxy_conf() { # logs(0|1)
  local logs=$1 log="" tls=""
  [ "$logs" = 1 ] && log="log stdout format raw local0
  option httplog"
  [ "$TLS" = 1 ] && tls="bind 127.0.0.1:$(port haproxy "$logs" 1) ssl crt $WORK/certs/haproxy.pem"
  cat <<CONF
global
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive
  option forwardfor
  $log
frontend fe
  bind 127.0.0.1:$(port haproxy "$logs" 0)
  $tls
  default_backend app
backend app
  http-reuse always
  server s1 127.0.0.1:$BACKEND
CONF
}

vigil_conf() { # logs(0|1)
  local logs=$1 access='"off"' tls=""
  [ "$logs" = 1 ] && access="\"$WORK/logs/vigil-access.log\""
  if [ "$TLS" = 1 ]; then
    tls="
[[server]]
listen = [\"127.0.0.1:$(port vigil "$logs" 1)\"]
tls = { cert = \"$WORK/certs/localhost.pem\", key = \"$WORK/certs/localhost-key.pem\" }
root = \"$WORK/www\"
  [[server.location]]
  path = \"/api/\"
  proxy_pass = \"app\"
  [[server.location]]
  path = \"/\""
  fi
  cat <<CONF
[log]
access_log = $access
level = "warn"

[admin]
listen = "127.0.0.1:$(( $(port vigil "$logs" 0) + 3 ))"

[[server]]
listen = ["127.0.0.1:$(port vigil "$logs" 0)"]
root = "$WORK/www"
  [[server.location]]
  path = "/api/"
  proxy_pass = "app"
  [[server.location]]
  path = "/"

[upstream.app]
keepalive = 64
servers = [{ addr = "127.0.0.1:$BACKEND" }]
$tls
CONF
}

"$NGINX" -c "$WORK/backend.conf"
declare -A PID
for logs in 0 1; do
  nginx_conf $logs > "$WORK/nginx-$logs.conf"
  "$NGINX" -c "$WORK/nginx-$logs.conf"
  haproxy_conf $logs > "$WORK/haproxy-$logs.cfg"
  "$HAPROXY" -db -f "$WORK/haproxy-$logs.cfg" > "$WORK/logs/haproxy-$logs.log" 2> "$WORK/logs/haproxy-$logs.err" &
  PID[haproxy$logs]=$!; PIDS+=("$!")
  vigil_conf $logs > "$WORK/vigil-$logs.toml"
  "$VIGIL" run -c "$WORK/vigil-$logs.toml" > "$WORK/logs/vigil-$logs.out" 2>&1 &
  PID[vigil$logs]=$!; PIDS+=("$!")
done
sleep 1
for logs in 0 1; do PID[nginx$logs]=$(cat "$WORK/nginx-$logs.pid"); done
for s in nginx haproxy vigil; do for logs in 0 1; do
  p=$(port $s $logs 0)
  curl -sf -o /dev/null "http://127.0.0.1:$p/api/x" || { echo "$s (logs $logs) on $p is not answering" >&2; tail "$WORK/logs/"* >&2; exit 1; }
  if [ "$TLS" = 1 ]; then
    curl -sf --cacert "$WORK/certs/ca.pem" -o /dev/null "https://localhost:$(port $s $logs 1)/api/x" \
      || { echo "$s (logs $logs) is not answering over TLS" >&2; tail "$WORK/logs/"* >&2; exit 1; }
  fi
done; done

# The process and its children (nginx's workers; haproxy and vigil are one
# multi-threaded process, whose stat already sums its threads).
family() { echo "$1" $(pgrep -P "$1" 2>/dev/null || true); }
rss_kb() {
  local total=0 pid
  for pid in $(family "$1"); do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
cpu_ticks() { # utime + stime (fields 14, 15; the name in field 2 has no spaces here)
  local total=0 pid
  for pid in $(family "$1"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
machine_ticks() { # busy time of all CPUs: user + nice + system + irq + softirq
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}
TICK=$(getconf CLK_TCK)

# One wrk run → "req/s p99_ms cpu_us_per_req machine_us_per_req"
run_wrk() { # url pid
  local url=$1 pid=$2 before after m_before m_after out
  before=$(cpu_ticks "$pid"); m_before=$(machine_ticks)
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" 2>/dev/null)
  after=$(cpu_ticks "$pid"); m_after=$(machine_ticks)
  printf "%s\n" "$out" | awk -v ticks=$((after - before)) -v mticks=$((m_after - m_before)) -v hz="$TICK" '
    function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v/1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v } if (v ~ /s$/) { sub(/s$/, "", v); return v*1000 } return v }
    /^ +99%/ { p99 = ms($2) }
    / requests in / { n = $1 }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx|Socket errors/ { err = err " " $0 }
    END { printf "%s %s %s %s%s\n", rps, p99, (n ? ticks / hz * 1e6 / n : 0), (n ? mticks / hz * 1e6 / n : 0), (err ? " ERR" err : "") }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf "\nvigil %s vs nginx %s vs haproxy %s: %s rounds of %ss per server and scenario, %s connections, %s wrk threads, %s cores, load average %s\n" \
  "$("$VIGIL" --version | awk '{print $2}')" "$("$NGINX" -v 2>&1 | sed 's|.*/||')" "$("$HAPROXY" -v | awk 'NR == 1 {print $3}')" \
  "$ROUNDS" "$DURATION" "$CONNECTIONS" "$THREADS" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)"
printf "%-40s | %-40s | %-40s | %-40s | %s\n" "" "nginx" "haproxy" "vigil" "vigil/nginx"
printf "%-40s |" scenario
for s in nginx haproxy vigil; do printf " %8s %6s %7s %7s %7s |" "req/s" "p99ms" "µs/req" "mach.µs" "RSSMiB"; done
printf " %6s %6s  %-13s %6s\n" "req/s×" "µs×" "(µs× range)" "mach.×"

# One scenario: ROUNDS alternating runs (nginx, haproxy, vigil, nginx...)
# so that load from anything else on the machine hits all alike; the median
# of each column is printed. RSS is read after each run (peak of the runs).
scenario() { # name path logs tls servers...
  local name=$1 path=$2 logs=$3 tls=$4; shift 4
  local servers=("$@") scheme=http s r line
  [ "$tls" = 1 ] && scheme=https
  declare -A out rss err
  for s in "${servers[@]}"; do
    wrk -t1 -c4 -d1s "$scheme://127.0.0.1:$(port "$s" "$logs" "$tls")$path" >/dev/null 2>&1 || true  # warm up
    out[$s]=""; rss[$s]=0; err[$s]=""
  done
  for r in $(seq 1 "$ROUNDS"); do
    for s in "${servers[@]}"; do
      line=$(run_wrk "$scheme://127.0.0.1:$(port "$s" "$logs" "$tls")$path" "${PID[$s$logs]}")
      out[$s]+="$line"$'\n'
      [[ "$line" == *ERR* ]] && err[$s]="${line#* ERR}"
      local m; m=$(rss_kb "${PID[$s$logs]}"); [ "$m" -gt "${rss[$s]}" ] && rss[$s]=$m
    done
  done
  printf "%-40s |" "$name"
  declare -A rps cpu
  for s in nginx haproxy vigil; do
    if [ -z "${out[$s]+set}" ]; then printf " %8s %6s %7s %7s %7s |" - - - - -; continue; fi
    rps[$s]=$(printf "%s" "${out[$s]}" | awk 'NF {print $1}' | median)
    cpu[$s]=$(printf "%s" "${out[$s]}" | awk 'NF {print $3}' | median)
    local p99; p99=$(printf "%s" "${out[$s]}" | awk 'NF {print $2}' | median)
    local mach; mach=$(printf "%s" "${out[$s]}" | awk 'NF {print $4}' | median)
    awk -v r="${rps[$s]}" -v p="$p99" -v c="${cpu[$s]}" -v x="$mach" -v m="${rss[$s]}" 'BEGIN { printf " %8.0f %6.2f %7.1f %7.1f %7.1f |", r, p, c, x, m / 1024 }'
  done
  # The ratios are taken round by round, vigil's run against nginx's run
  # next to it, and their median printed: the machine's speed drifts
  # over minutes (on a shared 2-core VM, ±15 % between rounds, both
  # servers alike), and a ratio of two medians taken from different
  # rounds carries that drift. The range shows the rounds' spread.
  paste <(printf "%s" "${out[vigil]}" | awk 'NF {print $1, $3, $4}') \
        <(printf "%s" "${out[nginx]}" | awk 'NF {print $1, $3, $4}') |
    awk '{ r[NR] = $1 / $4; c[NR] = $2 / $5; x[NR] = $3 / $6 }
      function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      END { m = med(c, NR); printf " %6.2f %6.2f  %-13s %6.2f\n", med(r, NR), m, sprintf("(%.2f-%.2f)", c[1], c[NR]), med(x, NR) }'
  for s in "${servers[@]}"; do [ -n "${err[$s]}" ] && echo "  $s errors: ${err[$s]}"; done
  return 0
}

for sc in $SCENARIOS; do
  case $sc in
    a) scenario "(a) proxied, logs off" /api/hello 0 0 nginx haproxy vigil
       scenario "(a) proxied, access log to a file" /api/hello 1 0 nginx haproxy vigil ;;
    b) scenario "(b) static 1 KiB, logs off" /1k.txt 0 0 nginx vigil
       scenario "(b) static 1 KiB, access log to a file" /1k.txt 1 0 nginx vigil ;;
    c) scenario "(c) static 1 MiB, logs off" /1m.bin 0 0 nginx vigil ;;
    d) [ "$TLS" = 1 ] && scenario "(d) HTTPS proxied, logs off" /api/hello 0 1 nginx haproxy vigil ;;
  esac
done
echo
echo "µs/req: the server's own CPU time (user + system) per request served; mach.µs: the whole machine's busy CPU time per request (wrk, backend and server); ×: vigil/nginx, the median of the rounds' ratios (each round's vigil run against its nginx run), with the lowest and highest round in brackets (req/s× above 1 and µs× below 1 = vigil better)"
for s in nginx haproxy vigil; do
  f="$WORK/logs/$s-access.log"; [ "$s" = haproxy ] && f="$WORK/logs/haproxy-1.log"
  [ -f "$f" ] && echo "$s access log: $(wc -l < "$f") lines"
done
