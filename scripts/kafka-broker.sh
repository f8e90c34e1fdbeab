#!/usr/bin/env bash
# A local Kafka-protocol broker for tests and experiments: tansu, built from
# crates.io once and cached outside the checkout, listening on 127.0.0.1 and
# storing topics in SQLite (unlike its in-memory storage, SQLite keeps topics
# across a broker restart and reports exact end offsets).
#
#   scripts/kafka-broker.sh install        # build the broker (once; tansu about 15 minutes on two cores)
#   scripts/kafka-broker.sh start [PORT]   # start it (default port 9092); prints the bootstrap address
#   scripts/kafka-broker.sh stop [PORT]    # stop it and wait until it has exited
#
# Environment: FIBERS_TOOLS (where the broker is installed, default
# ~/.cache/datafibers/tools), FIBERS_BROKER_DIR (its storage and log,
# default ~/.cache/datafibers/broker-PORT; give start and stop the same),
# TANSU_VERSION (default 0.6.0, the version the tests run against),
# FIBERS_BROKER_ADVERTISED (the host:port the broker tells clients to
# connect to, default its own; tests put a proxy there).
#
# FIBERS_BROKER=nisshi runs nisshi (tansu's successor, NISSHI_VERSION
# default 0.8.1) with its in-memory storage instead: 10-30 times the
# messages per second of tansu with SQLite, with exact end offsets, but no
# transactions (a Kafka sink cannot write to it) and nothing kept across a
# restart.
# The benches that only read topics use it; the tests use tansu. Building it
# takes a Rust toolchain of 1.96 or later (`cargo +nightly` if the default
# is older; RUSTUP_TOOLCHAIN picks another), cmake and libclang, and 30-45
# minutes on two cores, once.
#
# To use your own Kafka instead, point a stream at it:
#   CREATE STREAM ... WITH (connector = 'kafka', brokers = 'host:9092', ...)
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
NISSHI_VERSION="${NISSHI_VERSION:-0.8.1}"
broker="${FIBERS_BROKER:-tansu}"
tools="${FIBERS_TOOLS:-$HOME/.cache/datafibers/tools}"
case "$broker" in
  tansu | nisshi) ;;
  *) echo "FIBERS_BROKER must be tansu or nisshi, not '$broker'" >&2; exit 2 ;;
esac
binary="$tools/bin/$broker"

install_nisshi() {
  # Its storage crates build C and C++ code with cmake and bindgen.
  if ! command -v cmake >/dev/null || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
    echo "nisshi builds with cmake and libclang; install them first (Debian: apt-get install cmake libclang-dev)" >&2
    exit 1
  fi
  local toolchain="${RUSTUP_TOOLCHAIN:-}"
  if [ -z "$toolchain" ]; then
    local minor
    minor="$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')"
    [ "$minor" -lt 96 ] && toolchain=nightly
  fi
  echo "building nisshi $NISSHI_VERSION into $tools (once; 30-45 minutes on two cores)" >&2
  env -u CARGO_TARGET_DIR ${toolchain:+RUSTUP_TOOLCHAIN=$toolchain} \
    cargo install --locked nisshi --version "$NISSHI_VERSION" --root "$tools" >&2
}

install() {
  if [ -x "$binary" ]; then
    return
  fi
  if [ "$broker" = nisshi ]; then
    install_nisshi
    return
  fi
  echo "building tansu into $tools (once; about 15 minutes on two cores)" >&2
  local version=()
  [ -n "$TANSU_VERSION" ] && version=(--version "$TANSU_VERSION")
  # Without CARGO_TARGET_DIR, cargo install builds in a temporary directory
  # and removes it, rather than leaving tansu's build in the project's.
  env -u CARGO_TARGET_DIR cargo install --locked tansu "${version[@]}" \
    --features libsql,dynostore --root "$tools" >&2
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  local port="${1:-9092}"
  local dir="${FIBERS_BROKER_DIR:-$HOME/.cache/datafibers/broker-$port}"
  install
  mkdir -p "$dir"
  if port_open "$port"; then
    echo "port $port is already in use; stop it first (scripts/kafka-broker.sh stop $port)" >&2
    exit 1
  fi
  # tansu resolves a sqlite:// path against its working directory (even
  # sqlite:///abs/path), so it runs from its storage directory.
  local advertised="${FIBERS_BROKER_ADVERTISED:-127.0.0.1:$port}"
  local storage=(--storage-engine "sqlite://tansu.db")
  # A consumer group's first member starts at once, not after 3 s.
  [ "$broker" = nisshi ] && storage=(--storage-engine "memory://nisshi/" --group-initial-rebalance-delay 0s)
  (
    cd "$dir"
    exec nohup "$binary" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://$advertised" \
      "${storage[@]}" \
      >broker.log 2>&1
  ) &
  echo $! >"$dir/broker.pid"
  for _ in $(seq 1 100); do
    if port_open "$port"; then
      echo "127.0.0.1:$port"
      return
    fi
    if ! kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
      echo "$broker exited; its log ($dir/broker.log):" >&2
      tail -20 "$dir/broker.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$broker did not open port $port within 10 s; see $dir/broker.log" >&2
  exit 1
}

stop() {
  local port="${1:-9092}"
  local dir="${FIBERS_BROKER_DIR:-$HOME/.cache/datafibers/broker-$port}"
  if [ -f "$dir/broker.pid" ]; then
    local pid
    pid="$(cat "$dir/broker.pid")"
    kill "$pid" 2>/dev/null || true
    # Wait for it to exit, so the port is free for a restart at once.
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$broker ($pid) did not stop within 10 s; killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/broker.pid"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) sed -n '2,29p' "$0" >&2; exit 2 ;;
esac
