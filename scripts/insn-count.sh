#!/usr/bin/env bash
# Exact dynamic instruction counts under QEMU: one prefill and one decode step of golden
# models on the aarch64 JIT (microkernels + Cranelift), on Cranelift alone, and on the same
# Kernel IR written as plain Rust and compiled by LLVM (the baseline), with the ratio
# JIT/LLVM (goal ≤ 0.5).
#
# Pieces:
# - tools/qemu-insn-plugin/insn_regions.c: a TCG plugin counting every executed guest
#   instruction (inline add per instruction) and attributing counts to regions the guest
#   marks with lseek(/dev/null, MAGIC|id<<1|end).
#   Debian's qemu-user (7.2) is built with plugin support (`-plugin`), but no Debian package
#   ships qemu-plugin.h (checked: qemu-user, qemu-system-common; there is no -dev package).
#   The header is self-contained (stdint/stdbool/stddef only), so the script takes it from
#   the source package of the installed qemu-user version: `apt-get source --download-only`
#   with a private deb-src list and private apt state under target/qemu-plugin/apt (the
#   system's apt configuration is not touched), then extracts include/qemu/qemu-plugin.h from
#   the orig tarball (~24 MB, once; cached in target/qemu-plugin/). The plugin API version
#   (QEMU_PLUGIN_VERSION) therefore always matches the emulator.
# - targets/examples/insn_count.rs (built once, for aarch64): `gen` writes the baseline (bfly_targets::rustgen: every
#   body section as a plain Rust function over slices, f32 math, f32::exp), `run` executes
#   every backend on aarch64 and marks the regions, `report` prints the tables.
# - The baseline library: rustc -C opt-level=3 -C codegen-units=1 -C target-cpu=cortex-a78
#   --target aarch64-unknown-linux-gnu (a cdylib the driver dlopens, so both sides run under
#   the same executor with the same weights and tokens, and their logits are compared).
# - The driver is built in release into target/insn-count (its own target dir, so other
#   builds are not disturbed; the first build takes several minutes, later ones ~1 min).
#
# The counts are per step: prefill of PROMPT tokens (default 32) then one decode token at
# pos = PROMPT (clamped to the KV context − 1), after a warm-up round; "kern" columns subtract the executor's own work (a
# step whose sections do nothing). QEMU_CPU defaults to `max` (dotprod, fp16, i8mm).
#
# Usage: scripts/insn-count.sh [SPEC…]   (default: golden/specs/tiny-dib.bfly tiny-dense.bfly)
#        PROMPT=16 scripts/insn-count.sh …
set -euo pipefail
cd "$(dirname "$0")/.."

PROMPT="${PROMPT:-32}"
export QEMU_CPU="${QEMU_CPU:-max}"
SPECS=("$@")
if [ "${#SPECS[@]}" -eq 0 ]; then
    SPECS=(golden/specs/tiny-dib.bfly golden/specs/tiny-dense.bfly)
fi
PLUGDIR=target/qemu-plugin
OUT=target/insn-count/out
AARCH=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu
mkdir -p "$PLUGDIR" "$OUT"

for tool in qemu-aarch64 aarch64-linux-gnu-gcc gcc rustc cargo; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$tool is missing (apt-get install -y qemu-user gcc-aarch64-linux-gnu gcc)" >&2
        exit 1
    fi
done
if ! rustup target list --installed 2>/dev/null | grep -q "^$AARCH\$"; then
    rustup target add "$AARCH"
fi

# --- the plugin header ----------------------------------------------------------------
HEADER="$PLUGDIR/include/qemu-plugin.h"
if [ ! -f "$HEADER" ]; then
    mkdir -p "$PLUGDIR/include"
    if [ -f /usr/include/qemu-plugin.h ]; then
        cp /usr/include/qemu-plugin.h "$HEADER"
    else
        version=$(dpkg-query -W -f='${source:Version}' qemu-user)
        codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
        echo "fetching qemu-plugin.h from Debian's qemu $version source package ($codename)…"
        apt="$PWD/$PLUGDIR/apt"
        mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/src"
        key=/usr/share/keyrings/debian-archive-keyring.gpg
        {
            echo "deb-src [signed-by=$key] http://deb.debian.org/debian $codename main"
            echo "deb-src [signed-by=$key] http://deb.debian.org/debian $codename-updates main"
            echo "deb-src [signed-by=$key] http://deb.debian.org/debian-security $codename-security main"
        } >"$apt/sources.list"
        opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
            -o APT::Sandbox::User=root -qq)
        apt-get "${opts[@]}" update
        (cd "$apt/src" && apt-get "${opts[@]}" source --download-only "qemu=$version")
        tar -xJf "$apt"/src/qemu_*.orig.tar.xz -C "$apt/src" --wildcards '*/include/qemu/qemu-plugin.h'
        cp "$apt"/src/qemu-*/include/qemu/qemu-plugin.h "$HEADER"
        rm -rf "$apt/src"
    fi
fi
PLUGIN="$PLUGDIR/libinsn_regions.so"
if [ ! -f "$PLUGIN" ] || [ tools/qemu-insn-plugin/insn_regions.c -nt "$PLUGIN" ]; then
    gcc -O2 -shared -fPIC -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter \
        -I "$PLUGDIR/include" -o "$PLUGIN" tools/qemu-insn-plugin/insn_regions.c
fi

# --- the driver: one aarch64 release build; `gen` and `report` run under QEMU too -------
echo "building the driver (aarch64 release in target/insn-count)…" >&2
CARGO_TARGET_DIR=target/insn-count cargo build -q --release --target "$AARCH" \
    -p bfly-targets --example insn_count
GUEST_BIN=target/insn-count/$AARCH/release/examples/insn_count
driver() { qemu-aarch64 -L "$SYSROOT" "$GUEST_BIN" "$@"; }

echo "machine: $(uname -m), qemu $(qemu-aarch64 --version | awk 'NR==1 { print $3 }') -cpu $QEMU_CPU, $(rustc --version)"
echo "baseline: rustgen → rustc -C opt-level=3 -C codegen-units=1 -C target-cpu=cortex-a78"
echo
SUMMARY=()
for spec in "${SPECS[@]}"; do
    stem=$(basename "$spec" .bfly)
    src="$OUT/$stem.rs"
    lib="$OUT/lib$stem-llvm.so"
    driver gen "$spec" "$src"
    rustc --edition 2024 --crate-type cdylib --crate-name "bfly_llvm_${stem//-/_}" \
        -C opt-level=3 -C codegen-units=1 -C target-cpu=cortex-a78 -C panic=abort \
        --target "$AARCH" -C linker=aarch64-linux-gnu-gcc -o "$lib" "$src"
    qemu-aarch64 -L "$SYSROOT" -plugin "$PLUGIN,out=$OUT/$stem.plugin" \
        "$GUEST_BIN" run "$spec" "$lib" "$PROMPT" >"$OUT/$stem.map"
    report=$(driver report "$OUT/$stem.map" "$OUT/$stem.plugin")
    echo "$report"
    echo
    for phase in prefill decode; do
        row=$(echo "$report" | awk -v p="$phase" '$1 == p && NF >= 13 { print $7, $9, $11, $13; exit }')
        SUMMARY+=("$stem $phase $row")
    done
done
echo "summary: kernel instructions (step minus executor), JIT vs LLVM baseline; goal jit/llvm ≤ 0.5"
printf '%-16s %-8s %12s %12s %9s %9s\n' model step jit llvm jit/llvm "step j/l"
for s in "${SUMMARY[@]}"; do
    # shellcheck disable=SC2086
    printf '%-16s %-8s %12s %12s %9s %9s\n' $s
done
