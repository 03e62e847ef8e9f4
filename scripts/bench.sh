#!/usr/bin/env bash
# Host JIT benchmarks (release): one layer per width vs the gemm crate (layers), each JIT
# kernel kind vs the same loop nest compiled by LLVM (kernels), and the JIT compile time of
# every golden model (compile). Prints the machine first so a table says what made it.
# Usage: scripts/bench.sh [extra `cargo bench` args, e.g. `--bench layers`]
set -euo pipefail
cd "$(dirname "$0")/.."

echo "machine: $(uname -m), $(nproc) cores available"
if command -v lscpu >/dev/null 2>&1; then
    lscpu | grep 'Model name' || true
fi
echo "rustc: $(rustc --version)"
# Other work on the machine skews the tables, multi-threaded rows most: say how busy it was.
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
echo

if [ "$#" -gt 0 ]; then
    cargo bench -p bfly-targets "$@"
else
    cargo bench -p bfly-targets --bench layers --bench kernels --bench compile
fi
