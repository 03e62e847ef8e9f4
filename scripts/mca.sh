#!/usr/bin/env bash
# llvm-mca on the hot loop of every aarch64 microkernel the golden models select.
#
# 1. `targets/examples/aarch64_hot_loops.rs` emits the plan of every golden spec (inference
#    and training) for TARGET (default aarch64+dotprod+fp16) on this host and writes each
#    distinct hot loop — the bytes between a microkernel's `hot_loop` and `hot_loop_end`
#    marks — with its variant name and `useful_per_iter` (FMLA/SDOT per iteration). New
#    microkernel families appear without changes here.
# 2. Each loop is disassembled with `llvm-mc --disassemble` (LLVM syntax, re-assemblable;
#    branch targets print as `#-120`), or `aarch64-linux-gnu-objdump -D -b binary` with the
#    branch targets rewritten to a label when llvm-mc is missing.
# 3. `llvm-mca -mcpu=CPU -iterations=200` predicts its cycles per iteration (total cycles /
#    200) on neoverse-v2 (the stand-in for Cortex-X2: LLVM 19 models cortex-x2 with
#    Neoverse-N2's two vector pipes, while X2 has four, like V2), cortex-a710, cortex-a510.
#
# efficiency = (useful / pipes) / cycles-per-iteration, where pipes = 128-bit FMLA/SDOT
# issued per cycle: 4 on Neoverse-V2/X2, 2 on Cortex-A710, 2 on Cortex-A510. The A510 number
# is its vector unit in the 2×128-bit configuration, which is what LLVM's A510 model
# schedules (the unit is shared by the two cores of a merged-core complex, so a core may get
# less). The script measures each CPU's pipes on its model (16 independent FMLA .4s) and
# stops if the model disagrees with these numbers, so cycles and pipes always come from
# one model. Goals: gemm/qgemm ≥ 90 %, butterfly ≥ 80 % on V2 and A710.
#
# Usage: scripts/mca.sh [TARGET] [SPEC…]   (from anywhere; writes target/mca/)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${1:-aarch64+dotprod+fp16}"
shift || true
OUT=target/mca
ITER=200
CPUS=(neoverse-v2 cortex-a710 cortex-a510)
declare -A PIPES=([neoverse-v2]=4 [cortex-a710]=2 [cortex-a510]=2)
MATTR=+dotprod,+fullfp16,+i8mm,+fp16fml,+rdm

find_tool() { # first of the names on PATH
    for t in "$@"; do
        if command -v "$t" >/dev/null 2>&1; then
            echo "$t"
            return
        fi
    done
}
MCA=$(find_tool llvm-mca-19 llvm-mca)
MC=$(find_tool llvm-mc-19 llvm-mc)
OBJDUMP=$(find_tool aarch64-linux-gnu-objdump)
if [ -z "$MCA" ]; then
    echo "llvm-mca not found: apt-get install -y llvm-19" >&2
    exit 1
fi
if [ -z "$MC" ] && [ -z "$OBJDUMP" ]; then
    echo "neither llvm-mc nor aarch64-linux-gnu-objdump: apt-get install -y llvm-19" >&2
    exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT"
cargo run -q -p bfly-targets --example aarch64_hot_loops -- "$OUT/loops" "$TARGET" "$@" \
    2>"$OUT/emit.log" || {
    cat "$OUT/emit.log" >&2
    exit 1
}

# Bytes → assembly llvm-mca accepts.
disassemble() { # file.bin → stdout
    if [ -n "$MC" ]; then
        od -An -v -tx1 "$1" | tr -s ' ' '\n' | grep -v '^$' | sed 's/^/0x/' | paste -d' ' - - - - |
            "$MC" --disassemble -triple=aarch64 -mattr="$MATTR" 2>"$1.err" | grep -v '^\s*\.text'
    else
        echo ".Lhot:"
        "$OBJDUMP" -D -b binary -m aarch64 "$1" 2>"$1.err" |
            awk -F'\t' '/^ *[0-9a-f]+:\t/ { print $3 "\t" $4 }' |
            sed -E 's/<[^>]*>//; s/^((b\.[a-z]+|b|cbn?z|tbn?z)\t(.*, )?)[0-9a-fx]+ *$/\1.Lhot/'
    fi
}

# Predicted cycles per iteration of one assembly file on one CPU.
cycles() { # cpu file.s → cycles/iter
    "$MCA" -mtriple=aarch64 -mcpu="$1" -mattr="$MATTR" -iterations="$ITER" "$2" 2>/dev/null |
        awk -v it="$ITER" '/^Total Cycles:/ { printf "%.2f", $3 / it }'
}

# Pipes per CPU as its model sees them.
for i in $(seq 0 15); do echo "fmla v$i.4s, v30.4s, v31.4s"; done >"$OUT/pipes.s"
echo "machine model check (16 independent fmla .4s per iteration):"
for cpu in "${CPUS[@]}"; do
    c=$(cycles "$cpu" "$OUT/pipes.s")
    measured=$(awk -v c="$c" 'BEGIN { printf "%.0f", 16 / c }')
    echo "  $cpu: $c cycles/iter → $measured FMLA/cycle (using ${PIPES[$cpu]})"
    if [ "$measured" != "${PIPES[$cpu]}" ]; then
        echo "llvm-mca's $cpu model issues $measured FMLA/cycle, the script assumes ${PIPES[$cpu]}" >&2
        exit 1
    fi
done
echo

MANIFEST="$OUT/loops/manifest.tsv"
rows=$(($(wc -l <"$MANIFEST") - 1))
if [ "$rows" -le 0 ]; then
    echo "no microkernel with a marked hot loop for $TARGET"
    cat "$OUT/emit.log"
    exit 0
fi

RESULTS="$OUT/results.tsv"
: >"$RESULTS"
tail -n +2 "$MANIFEST" | while IFS=$'\t' read -r file variant useful insns kernel sites alike; do
    asm="$OUT/loops/${file%.bin}.s"
    disassemble "$OUT/loops/$file" >"$asm"
    if [ -s "$OUT/loops/$file.err" ]; then
        echo "warning: $file ($variant) did not disassemble cleanly:" >&2
        head -3 "$OUT/loops/$file.err" >&2
    fi
    line="${file%.bin}"$'\t'"$variant"$'\t'"$useful"$'\t'"$insns"
    for cpu in "${CPUS[@]}"; do
        line+=$'\t'"$(cycles "$cpu" "$asm")"
    done
    echo "$line" >>"$RESULTS"
done

echo "hot loops of the aarch64 microkernels, $TARGET ($rows distinct; llvm-mca $("$MCA" --version | awk '/version/ { print $NF; exit }'), $ITER iterations)"
echo "cyc = predicted cycles per iteration; eff = (useful / pipes) / cyc; pipes V2 4, A710 2, A510 2"
awk -F'\t' -v pv2="${PIPES[neoverse-v2]}" -v pa7="${PIPES[cortex-a710]}" -v pa5="${PIPES[cortex-a510]}" '
    BEGIN {
        printf "%-3s %-48s %6s %5s | %7s %6s | %7s %6s | %7s %6s | %s\n", "#", "kernel", "useful",
            "insns", "V2 cyc", "eff", "A710cyc", "eff", "A510cyc", "eff", "goal (V2, A710)"
        hit = 0; total = 0
    }
    {
        e1 = $3 / pv2 / $5; e2 = $3 / pa7 / $6; e3 = $3 / pa5 / $7
        goal = ""
        if ($2 ~ /^(gemm|qgemm)\./) g = 0.90; else if ($2 ~ /^butterfly\./) g = 0.80; else g = 0
        if (g > 0) {
            total++
            ok = (e1 >= g - 1e-9 && e2 >= g - 1e-9)
            hit += ok
            goal = sprintf("%s ≥%d%%", ok ? "met" : "MISSED", g * 100)
        }
        printf "%-3s %-48s %6d %5d | %7.2f %5.1f%% | %7.2f %5.1f%% | %7.2f %5.1f%% | %s\n", $1, $2, $3,
            $4, $5, 100 * e1, $6, 100 * e2, $7, 100 * e3, goal
    }
    END { if (total > 0) printf "goals met on V2 and A710: %d of %d kernels with a goal\n", hit, total }
' "$RESULTS"
skipped=$(($(wc -l <"$OUT/loops/skipped.tsv") - 1))
if [ "$skipped" -gt 0 ]; then
    echo "microkernels without a measurable hot loop ($skipped sections):"
    tail -n +2 "$OUT/loops/skipped.tsv" | cut -f1,4 | sort -u | sed 's/^/  /'
fi
echo "(# = target/mca/loops/#.s, the assembly fed to llvm-mca; manifest.tsv says where each loop runs)"
