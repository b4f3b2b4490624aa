#!/bin/bash
# Static files: vigil (examples/static_server.rs) against nginx on the same
# box, same files, same load. Needs nginx (nginx-light) and wrk.
#
#   cargo build --release --example static_server
#   benches/static_files_vs_nginx.sh [rounds] [seconds] [connections]
#
# Each server gets one worker pinned to CPU 1, wrk one thread pinned to
# CPU 0 (on a 2-core box that keeps client and server apart). Rounds
# alternate servers so drift (VM steal time) hits both alike; report the
# medians. Per run: req/s, p50/p99 latency, server CPU per request (from
# /proc utime+stime, all threads / all nginx processes) and RSS after the
# run (summed over nginx master + worker).
#
# nginx config: access_log off (the example server has no log either),
# sendfile on, tcp_nopush on, keepalive_requests raised so that neither
# side closes connections during the run.
set -euo pipefail

# PIN=0 WORKERS=2: no pinning, two workers each and two wrk threads (all
# three share both cores), the unpinned variant of the comparison.
pin=${PIN:-1}
workers=${WORKERS:-1}
rounds=${1:-5}
secs=${2:-8}
conns=${3:-50}
repo=$(cd "$(dirname "$0")/.." && pwd)
vigil_bin=${VIGIL_BIN:-$repo/target/release/examples/static_server}
work=$(mktemp -d /tmp/vigil-static-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/www" "$work/nginx"
# nginx workers run as an unprivileged user: they must be able to read.
chmod 755 "$work"
head -c 1024 /dev/urandom >"$work/www/1k.bin"
head -c 1048576 /dev/urandom >"$work/www/1m.bin"

cat >"$work/nginx/nginx.conf" <<EOF
worker_processes $workers;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/tmp;
    proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp;
    uwsgi_temp_path $work/nginx/tmp;
    scgi_temp_path $work/nginx/tmp;
    server {
        listen 127.0.0.1:18082;
        root $work/www;
    }
}
EOF

on() { # cpu-list command...: pinned or not
    local cpus=$1
    shift
    if [ "$pin" = 1 ]; then taskset -c "$cpus" "$@"; else "$@"; fi
}

cpu_ticks() { # pids... -> utime+stime
    local sum=0
    for p in "$@"; do sum=$((sum + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
    echo "$sum"
}

rss_kb() {
    local sum=0
    for p in "$@"; do sum=$((sum + $(awk '/VmRSS/{print $2}' "/proc/$p/status"))); done
    echo "$sum"
}

run() { # server path
    local server=$1 path=$2 port pids
    if [ "$server" = nginx ]; then
        on 1 nginx -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log"
        sleep 0.5
        port=18082
        pids="$(cat "$work/nginx/nginx.pid") $(pgrep -P "$(cat "$work/nginx/nginx.pid")" | tr '\n' ' ')"
    else
        # Not through `on`: $! must be the server itself, not a subshell.
        if [ "$pin" = 1 ]; then
            taskset -c 1 "$vigil_bin" 127.0.0.1:18081 "$work/www" "$workers" 2>>"$work/vigil.err" &
        else
            "$vigil_bin" 127.0.0.1:18081 "$work/www" "$workers" 2>>"$work/vigil.err" &
        fi
        sleep 0.5
        port=18081
        pids=$!
    fi
    # shellcheck disable=SC2086
    {
        on 0 wrk -t"$workers" -c"$conns" -d2s "http://127.0.0.1:$port$path" >/dev/null
        local before after out reqs
        before=$(cpu_ticks $pids)
        out=$(on 0 wrk -t"$workers" -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port$path")
        after=$(cpu_ticks $pids)
        reqs=$(awk '/requests in/{print $1}' <<<"$out")
        printf '%-5s %-7s rps=%-9s p50=%-8s p99=%-8s cpu_us/req=%-6s rss_kb=%s\n' "$server" "$path" \
            "$(awk '/Requests\/sec/{print $2}' <<<"$out")" \
            "$(awk '$1=="50%"{print $2}' <<<"$out")" "$(awk '$1=="99%"{print $2}' <<<"$out")" \
            "$(awk -v t=$((after - before)) -v r="$reqs" 'BEGIN{printf "%.1f", t*10000/r}')" \
            "$(rss_kb $pids)"
        grep -E "Non-2xx|Socket errors" <<<"$out" || true
        kill $pids
    }
    if [ "$server" = nginx ]; then while [ -e "$work/nginx/nginx.pid" ]; do sleep 0.1; done; fi
    sleep 0.5
}

for _ in $(seq "$rounds"); do
    for path in /1k.bin /1m.bin; do
        run vigil "$path"
        run nginx "$path"
    done
done
