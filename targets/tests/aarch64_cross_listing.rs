//! Cranelift's aarch64 code for every section of every golden model (inference and training),
//! on any host: the sections the aarch64 backend leaves to Cranelift run exactly this code on a
//! phone, so each must compile for aarch64 with and without the optional features. Runs on x86
//! too, so a lowering Cranelift's aarch64 backend rejects (e.g. a vector float compare it has no
//! rule for) fails here before the QEMU legs.

mod exec_golden;
mod lower_common;

use bfly_compiler::Mode;
use bfly_targets::aarch64::CpuFeatures;
use bfly_targets::cranelift::cross::aarch64_asm;
use exec_golden::golden;
use lower_common::golden_specs;

/// Ignored on aarch64 (the QEMU legs): Cranelift's output for a given target ISA and flags does
/// not depend on the host, so the host leg already compiles exactly this code for both feature
/// sets; on aarch64 it only re-did that (~25 s per QEMU leg), and `aarch64_golden` there
/// compiles and runs the fallback sections natively anyway.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "host-independent: the host leg compiles the same aarch64 code"
)]
fn every_golden_section_compiles_for_aarch64() {
    for (stem, _, _) in golden_specs() {
        for mode in [Mode::Infer, Mode::Train] {
            let program = golden(&stem, mode).program;
            let sections: usize = program.bodies.iter().map(|b| b.num_sections()).sum();
            for target in ["aarch64+dotprod+fp16", "aarch64"] {
                let features = CpuFeatures::parse_target(target).unwrap();
                let texts = aarch64_asm(&program, features, &|_, _| true)
                    .unwrap_or_else(|e| panic!("{stem} {mode:?} {target}: {e}"));
                assert_eq!(texts.len(), sections, "{stem} {mode:?} {target}");
                assert!(texts.iter().all(|t| !t.asm.is_empty()));
            }
        }
    }
}
