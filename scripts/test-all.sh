#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what it needs, then runs every check.
#   1. formatting and clippy (-D warnings) over the whole workspace, all targets
#   2. the host test suite (unit, golden snapshots, property tests, CLI)
#   3. the same suite cross-compiled for aarch64-unknown-linux-gnu and run under qemu-aarch64
#      on two CPUs at once: `max` (dotprod, fp16) and `cortex-a53` (neither), so every fallback runs
# Set BFLY_SKIP_QEMU=1 to skip step 3 on a machine where it cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
if [ "${BFLY_SKIP_QEMU:-0}" != 1 ]; then
  command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
  command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
  [ -d /usr/aarch64-linux-gnu/lib ] || need_apt+=(libc6-dev-arm64-cross)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
if [ "${BFLY_SKIP_QEMU:-0}" != 1 ]; then
  rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$' \
    || rustup target add aarch64-unknown-linux-gnu
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# Prints a cargo test log without build progress and empty-binary noise; when `rc` is not 0
# the failing tests, panics and compiler errors are repeated at the end, so they survive a
# truncated CI view.
report_log() {
  local log=$1 rc=$2
  grep -vE '^ *(Compiling|Downloading|Downloaded|Fresh|Blocking) |^(running 0 tests|test result: ok\. 0 passed.*|)$' "$log" || true
  if [ "$rc" != 0 ]; then
    step "FAILED (exit $rc) — summary of $log"
    grep -E "^error|^warning: .*(No space|failed)|panicked at|^test .* FAILED|^    [a-z_0-9:]+$|Running .*\(|could not compile|No space left|signal: [0-9]+|SIGKILL|Killed" "$log" | tail -60 || true
    df -h . 2>/dev/null | tail -1 || true
  fi
}

# Runs a cargo test command, keeps its whole log, reports it, and fails with the command's
# own exit code.
run_tests() {
  local log=$1; shift
  local rc=0
  "$@" >"$log" 2>&1 || rc=$?
  report_log "$log" "$rc"
  return "$rc"
}
mkdir -p target

step "host tests"
run_tests target/host-tests.log cargo test --workspace

if [ "${BFLY_SKIP_QEMU:-0}" != 1 ]; then
  aarch64=(cargo test --workspace --target aarch64-unknown-linux-gnu)
  step "aarch64 test build"
  run_tests target/aarch64-build.log "${aarch64[@]}" --no-run
  # The two CPUs run at the same time: each leg runs one test binary after another, and most
  # binaries spend most of their time in one long test, so one leg alone keeps about one of
  # the machine's cores busy. Everything is built above, so neither leg compiles (cargo takes
  # its build lock only to check freshness, not while tests run). Each leg has its own log,
  # printed whole once both are done.
  cpus=(max cortex-a53) pids=()
  for cpu in "${cpus[@]}"; do
    QEMU_CPU=$cpu BFLY_CLI_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
      "${aarch64[@]}" >"target/qemu-$cpu-tests.log" 2>&1 &
    pids+=($!)
  done
  trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
  qemu_rc=0
  for i in "${!cpus[@]}"; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    step "aarch64 tests under qemu-aarch64 -cpu ${cpus[$i]}"
    report_log "target/qemu-${cpus[$i]}-tests.log" "$rc"
    [ "$rc" = 0 ] || qemu_rc=$rc
  done
  trap - INT TERM
  [ "$qemu_rc" = 0 ] || exit "$qemu_rc"
fi

total_passed=$(cat target/*tests.log | grep -oE 'test result: ok\. [0-9]+ passed' | awk '{s+=$4} END {print s+0}')
total_failed=$(cat target/*tests.log | grep -oE '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
step "all checks passed"
echo "$total_passed passed, $total_failed failed"
