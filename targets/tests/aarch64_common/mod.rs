//! Running lowered cases on the aarch64 backend (microkernels + Cranelift fallback) and
//! comparing with the reference. On a non-aarch64 host the programs are only emitted
//! (`Aarch64Plan`), which still checks that the expected microkernel was selected.
#![allow(dead_code)]

use crate::lower_common::Prepared;
use bfly_targets::aarch64::{Aarch64Plan, CpuFeatures};
use std::sync::Arc;

/// The features the tests run with: this CPU's (limited by `BFLY_AARCH64_FEATURES`); on
/// other hosts, everything (emission only).
pub fn features() -> CpuFeatures {
    if cfg!(target_arch = "aarch64") {
        CpuFeatures::from_env().unwrap_or_else(|e| panic!("{e}"))
    } else {
        CpuFeatures::parse_target("aarch64+dotprod+fp16").unwrap()
    }
}

/// Emits the plan for `p` and asserts that at least one section runs a microkernel whose
/// variant name starts with `variant` (e.g. `gemm.f32`); returns the plan.
pub fn expect_micro(p: &Prepared, features: CpuFeatures, variant: &str) -> Aarch64Plan {
    let plan = Aarch64Plan::emit(&p.program, features);
    assert!(
        plan.micro.iter().any(|m| m.micro.name.starts_with(variant)),
        "no `{variant}` microkernel selected for {features}:\n{}\n\n{}",
        plan.fallback_report(),
        p.program.print()
    );
    plan
}

/// Runs the prepared case on the aarch64 backend with `threads` threads and compares
/// every output with the reference within `tol` (relative to max(1, max |want|)). A no-op
/// off aarch64 (nothing can execute the code there).
pub fn run_and_compare(p: &Prepared, features: CpuFeatures, threads: usize, tol: f64) {
    #[cfg(target_arch = "aarch64")]
    {
        use bfly_targets::aarch64::Aarch64Program;
        use bfly_targets::cranelift::JitOptions;
        use bfly_targets::exec::Executor;
        let program = Arc::new(p.program.clone());
        let jit = Aarch64Program::compile(&program, features, JitOptions::code_only())
            .unwrap_or_else(|e| panic!("compiling: {e}"));
        let mut exec = Executor::new(program, Arc::new(jit), &p.weights, threads)
            .unwrap_or_else(|e| panic!("loading: {e}"));
        let got = exec
            .step(&p.inputs, p.syms)
            .unwrap_or_else(|e| panic!("running: {e}"));
        p.compare(&got, tol);
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        let _ = (p, features, threads, tol, Arc::new(()));
    }
}
