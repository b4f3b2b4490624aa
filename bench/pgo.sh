#!/usr/bin/env bash
# Profile-guided build of vigil, then bench/proxy.sh on it.
#
# The release build spends more user time per request than its
# instruction count explains: its hot path touches about three times the
# code nginx's does, and instruction-cache misses cost more than the
# extra instructions (callgrind's cache model, proxied request: 589 I1
# misses against nginx's 184). Profile-guided optimisation lays the hot
# code out together and moves cold branches aside. This script:
#   1. builds vigil instrumented (target/pgo-gen),
#   2. trains it: a proxied small response (through vigil to a `return`
#      location of the same vigil, so nothing else is needed) and a 1 KiB
#      static file, each with the access log off and on,
#   3. merges the profiles with the toolchain's llvm-profdata
#      (`rustup component add llvm-tools` when missing),
#   4. rebuilds with them: target/pgo-use/release/vigil,
#   5. runs bench/proxy.sh on that binary (VIGIL_BIN), scenarios a and b
#      unless SCENARIOS says otherwise.
#
# Usage: bench/pgo.sh [seconds-per-run]  (passed to bench/proxy.sh)
# Environment: TRAIN_SECONDS (8 per workload), PORT_BASE (19450),
#              SCENARIOS ("a b"), NO_BENCH=1 to stop after the build.
# Needs: rustup, cargo, wrk; bench/proxy.sh's needs for step 5.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRAIN_SECONDS=${TRAIN_SECONDS:-8}
PORT_BASE=${PORT_BASE:-19450}
FRONT=$((PORT_BASE + 1))
BACK=$((PORT_BASE + 2))
ADMIN=$((PORT_BASE + 3))
WORK=$(mktemp -d /tmp/vigil-pgo.XXXXXX)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null 2>&1 || {
  echo "installing wrk..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
}
HOST=$(rustc -vV | awk '/^host:/ {print $2}')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
  echo "adding the llvm-tools component (llvm-profdata)..." >&2
  rustup component add llvm-tools >&2
fi

echo "building vigil instrumented (target/pgo-gen)..." >&2
# Build scripts run instrumented too; their profiles go to a directory of
# their own and are not merged.
(cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/pgo-gen" \
  RUSTFLAGS="-Cprofile-generate=$WORK/build-scripts" \
  cargo build --release -q --bin vigil)

mkdir -p "$WORK/www" "$WORK/profiles"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$WORK/www/1k.txt"
train_conf() { # access_log value
  cat <<CONF
[log]
access_log = "$1"
level = "warn"
[admin]
listen = "127.0.0.1:$ADMIN"
[[server]]
listen = ["127.0.0.1:$FRONT"]
root = "$WORK/www"
  [[server.location]]
  path = "/api/"
  proxy_pass = "app"
  [[server.location]]
  path = "/"
[[server]]
listen = ["127.0.0.1:$BACK"]
root = "$WORK/www"
  [[server.location]]
  path = "/"
  return = { status = 200, body = "hello from the backend\n" }
[upstream.app]
keepalive = 64
servers = [{ addr = "127.0.0.1:$BACK" }]
CONF
}

for log in off "$WORK/access.log"; do
  train_conf "$log" > "$WORK/train.toml"
  LLVM_PROFILE_FILE="$WORK/profiles/vigil-%p.profraw" \
    "$ROOT/target/pgo-gen/release/vigil" run -c "$WORK/train.toml" > "$WORK/train.out" 2>&1 &
  PID=$!
  for _ in $(seq 1 50); do
    curl -s -o /dev/null "http://127.0.0.1:$FRONT/api/" && break
    sleep 0.1
  done
  for path in /api/hello /1k.txt; do
    echo "training: $path, access log $log" >&2
    out=$(wrk -t2 -c32 -d"${TRAIN_SECONDS}s" "http://127.0.0.1:$FRONT$path" 2>&1) || true
    if ! grep -q 'Requests/sec' <<<"$out"; then
      echo "training load on $path failed; wrk said:" >&2
      echo "$out" >&2
      cat "$WORK/train.out" >&2
      exit 1
    fi
    grep -E 'Requests/sec|Non-2xx' <<<"$out" >&2
  done
  # A graceful stop: the profile is written as the process exits.
  kill -TERM "$PID"
  wait "$PID" || true
  PID=""
done
ls "$WORK"/profiles/*.profraw > /dev/null || {
  echo "no profile was written; see $WORK/train.out" >&2
  cat "$WORK/train.out" >&2
  exit 1
}
"$PROFDATA" merge -o "$WORK/vigil.profdata" "$WORK"/profiles/*.profraw

echo "building vigil with the profile (target/pgo-use)..." >&2
(cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/pgo-use" \
  RUSTFLAGS="-Cprofile-use=$WORK/vigil.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --release -q --bin vigil)
echo "profile-guided build: $ROOT/target/pgo-use/release/vigil" >&2

[ "${NO_BENCH:-0}" = 1 ] && exit 0
VIGIL_BIN="$ROOT/target/pgo-use/release/vigil" SCENARIOS=${SCENARIOS:-"a b"} \
  "$ROOT/bench/proxy.sh" "$@"
