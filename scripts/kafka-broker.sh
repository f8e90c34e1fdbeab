#!/usr/bin/env bash
# A local Kafka-protocol broker for tests and experiments: tansu, built from
# crates.io once and cached outside the checkout, listening on 127.0.0.1 and
# storing topics in SQLite (unlike its in-memory storage, SQLite keeps topics
# across a broker restart and reports exact end offsets).
#
#   scripts/kafka-broker.sh install        # build tansu (about 15 minutes on two cores, once)
#   scripts/kafka-broker.sh start [PORT]   # start it (default port 9092); prints the bootstrap address
#   scripts/kafka-broker.sh stop [PORT]    # stop it and wait until it has exited
#
# Environment: FIBERS_TOOLS (where tansu is installed, default
# ~/.cache/datafibers/tools), FIBERS_BROKER_DIR (its storage and log,
# default ~/.cache/datafibers/broker-PORT; give start and stop the same),
# TANSU_VERSION (default 0.6.0, the version the tests run against),
# FIBERS_BROKER_ADVERTISED (the host:port the broker tells clients to
# connect to, default its own; tests put a proxy there).
#
# To use your own Kafka instead, point a stream at it:
#   CREATE STREAM ... WITH (connector = 'kafka', brokers = 'host:9092', ...)
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
tools="${FIBERS_TOOLS:-$HOME/.cache/datafibers/tools}"
tansu="$tools/bin/tansu"

install() {
  if [ -x "$tansu" ]; then
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
  (
    cd "$dir"
    exec nohup "$tansu" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://$advertised" \
      --storage-engine "sqlite://tansu.db" \
      >broker.log 2>&1
  ) &
  echo $! >"$dir/broker.pid"
  for _ in $(seq 1 100); do
    if port_open "$port"; then
      echo "127.0.0.1:$port"
      return
    fi
    if ! kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
      echo "tansu exited; its log ($dir/broker.log):" >&2
      tail -20 "$dir/broker.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "tansu did not open port $port within 10 s; see $dir/broker.log" >&2
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
      echo "tansu ($pid) did not stop within 10 s; killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/broker.pid"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
