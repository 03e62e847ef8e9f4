/*
 * bfly instruction counter: a QEMU TCG plugin that counts executed guest instructions
 * exactly and attributes them to regions the guest program delimits with markers.
 *
 * Counting: every translated instruction gets an inline `add 1` to one 64-bit counter
 * (QEMU_PLUGIN_INLINE_ADD_U64 per instruction, not per block, so a block left early by a
 * fault still counts only what ran). One counter for all vCPUs: run the guest on one thread.
 *
 * Markers: the guest calls lseek(fd, MAGIC | id << 1 | end, SEEK_SET) on any fd (the offset
 * is positive, /dev/null accepts it). Safe Rust can issue that syscall (`File::seek`), so no
 * inline asm is needed in the guest. A begin snapshots the counter on a stack; the matching
 * end adds the difference to region `id` (regions may nest; a nested region's instructions
 * count in its parent too). The marker's own cost (the libc/std path around the syscall)
 * is measured by the guest with an empty region and subtracted there.
 *
 * Output (at exit, to `out=FILE` if given, else through qemu_plugin_outs = stderr):
 *   bfly-insn total <instructions executed by the whole program>
 *   bfly-insn region <id> <times entered> <instructions>
 *
 * Build: see scripts/insn-count.sh (the header comes from Debian's qemu source package).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAGIC 0x0B1F000000000000ULL
#define MAGIC_MASK 0xFFFF000000000000ULL
#define AARCH64_NR_LSEEK 62
#define MAX_IDS 65536
#define MAX_DEPTH 64

static uint64_t insns;
static uint64_t totals[MAX_IDS];
static uint64_t entries[MAX_IDS];
static struct {
    uint32_t id;
    uint64_t start;
} stack[MAX_DEPTH];
static int depth;
static uint64_t unbalanced;
static char out_path[4096];

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &insns, 1);
    }
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    if (num != AARCH64_NR_LSEEK || (a2 & MAGIC_MASK) != MAGIC) {
        return;
    }
    uint64_t code = a2 & ~MAGIC_MASK;
    uint32_t region = (uint32_t)(code >> 1);
    int end = (int)(code & 1);
    if (region >= MAX_IDS) {
        unbalanced++;
        return;
    }
    if (!end) {
        if (depth == MAX_DEPTH) {
            unbalanced++;
            return;
        }
        stack[depth].id = region;
        stack[depth].start = insns;
        depth++;
        return;
    }
    if (depth == 0 || stack[depth - 1].id != region) {
        unbalanced++;
        return;
    }
    depth--;
    totals[region] += insns - stack[depth].start;
    entries[region]++;
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    FILE *f = out_path[0] ? fopen(out_path, "w") : NULL;
    char line[128];
#define EMIT(...)                                   \
    do {                                            \
        snprintf(line, sizeof line, __VA_ARGS__);   \
        if (f) {                                    \
            fputs(line, f);                         \
        } else {                                    \
            qemu_plugin_outs(line);                 \
        }                                           \
    } while (0)
    EMIT("bfly-insn total %" PRIu64 "\n", insns);
    if (unbalanced || depth) {
        EMIT("bfly-insn unbalanced %" PRIu64 " open %d\n", unbalanced, depth);
    }
    for (uint32_t i = 0; i < MAX_IDS; i++) {
        if (entries[i]) {
            EMIT("bfly-insn region %" PRIu32 " %" PRIu64 " %" PRIu64 "\n", i, entries[i],
                 totals[i]);
        }
    }
    if (f) {
        fclose(f);
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    if (strcmp(info->target_name, "aarch64") != 0) {
        fprintf(stderr, "insn_regions: markers use the aarch64 lseek number; target is %s\n",
                info->target_name);
        return -1;
    }
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        } else {
            fprintf(stderr, "insn_regions: unknown argument `%s` (known: out=FILE)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
