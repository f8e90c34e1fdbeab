#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/ for a set time each and prints what
# each did: executions, executions per second, corpus growth and crashes.
#
#   scripts/fuzz.sh                   # every target, 600 s each
#   scripts/fuzz.sh 60 sql catalog    # two targets, 60 s each
#   FUZZ_JOBS=2 scripts/fuzz.sh       # two targets at a time
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain for
# the sanitizer flags; without one, stable is told to accept them
# (RUSTC_BOOTSTRAP=1). The build (release, instrumented, its own target
# dir) takes a while the first time. Each target's corpus grows in
# ~/.cache/datafibers/fuzz-corpus/<target>, starting from fuzz/seeds/<target>;
# a crashing input lands in fuzz/artifacts/<target>/ and is reproduced with
# `cargo fuzz run <target> <file>` (turn it into a regression test).
#
# FUZZ_SANITIZER: address (the default) or none (faster, finds panics,
# aborts, stack overflows, leaks of time and memory, but not bad memory
# accesses in unsafe code).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

seconds="${1:-600}"
shift || true
all=(json_records csv_records avro_records sql flight_ticket checkpoint catalog)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
jobs="${FUZZ_JOBS:-1}"
sanitizer="${FUZZ_SANITIZER:-address}"
cache="$HOME/.cache/datafibers"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$cache/fuzz-target}"

command -v cargo-fuzz >/dev/null || {
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 1
}
toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

# C libraries built by cc-rs (zlib, zstd) pick the sanitizer up from the
# Rust flags; librdkafka's configure links its checks against them, so it
# needs the same flag or every check fails and the build stops.
if [ "$sanitizer" = address ]; then
  export CFLAGS="${CFLAGS:+$CFLAGS }-fsanitize=address" \
    CXXFLAGS="${CXXFLAGS:+$CXXFLAGS }-fsanitize=address" \
    LDFLAGS="${LDFLAGS:+$LDFLAGS }-fsanitize=address"
fi

flag="${toolchain[*]:-}"
for target in "${targets[@]}"; do
  cargo $flag fuzz build --sanitizer "$sanitizer" "$target" 2>&1 | grep -v '^ *Compiling' >&2 || true
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "the build of $target failed" >&2; exit 1; }
done

logs="$(mktemp -d)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# One target's run, its log and exit status in $logs; the catalog target
# writes its scratch SQLite files under $scratch.
run_one() {
  local target="$1" corpus="$cache/fuzz-corpus/$1"
  mkdir -p "$corpus" "artifacts/$target"
  FIBERS_FUZZ_TMP="$scratch" cargo $flag fuzz run --sanitizer "$sanitizer" "$target" \
    "$corpus" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" \
    >"$logs/$target.log" 2>&1
  echo "$?" >"$logs/$target.rc"
}
export -f run_one
export seconds sanitizer cache logs scratch flag
echo "fuzzing ${targets[*]} for ${seconds}s each, $jobs at a time (logs in $logs)" >&2
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'

status=0
printf '%-14s %12s %10s %8s %8s  %s\n' target executions exec/s corpus rss_mb outcome
for target in "${targets[@]}"; do
  log="$logs/$target.log"
  stat() { grep -Eo "stat::$1: *[0-9]+" "$log" | grep -Eo '[0-9]+$' | tail -1; }
  rc="$(cat "$logs/$target.rc")"
  corpus="$(find "$cache/fuzz-corpus/$target" -type f | wc -l)"
  if [ "$rc" -eq 0 ]; then
    outcome="no crash"
  else
    status=1
    artifact="$(grep -Eo "artifacts/$target/[a-z-]+[0-9a-f]+" "$log" | tail -1)"
    outcome="FOUND (rc $rc): ${artifact:-see $log}"
  fi
  printf '%-14s %12s %10s %8s %8s  %s\n' "$target" "$(stat number_of_executed_units)" \
    "$(stat average_exec_per_sec)" "$corpus" "$(stat peak_rss_mb)" "$outcome"
done
exit "$status"
