//! Running lowered cases on the aarch64 backend (microkernels + Cranelift fallback) and
//! comparing with the reference. On a non-aarch64 host the programs are only emitted
//! (`Aarch64Plan`), which still checks that the expected microkernel was selected.
//!
//! Also the case-building pieces the aarch64 test files share: fused regions, row slices
//! of step inputs, and every golden model lowered in both modes.
#![allow(dead_code)]

pub mod butterfly;

use crate::lower_common::{Case, Prepared, golden_specs, graph_at};
use bfly_compiler::Mode;
use bfly_ir::Value;
use bfly_ir::kernel::KernelProgram;
use bfly_targets::aarch64::{Aarch64Plan, CpuFeatures};
use bfly_targets::lower::{LowerMode, lower_graph};
use bfly_targets::reference::{Data, Tensor};

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

/// Puts `members` (an op and what follows it) in one fused region of the case's graph.
pub fn fuse(c: &mut Case, members: &[Value]) {
    let r = c.g.new_region();
    for v in members {
        c.g.set_region(v.node, Some(r));
    }
}

/// `y = x · wᵀ (+ bias)` on `c`: x of `groups · k` features, w `[n, k]` (or `[groups, n,
/// k]` when grouped) — the first param of the case, `p0` —, bias of `groups · n`.
pub fn matmul(c: &mut Case, groups: u64, n: u64, k: u64, bias: bool) -> Value {
    let x = c.act(groups * k);
    let w = if groups == 1 {
        c.param(&[n, k])
    } else {
        c.param(&[groups, n, k])
    };
    let mut args = vec![x, w];
    if bias {
        args.push(c.param(&[groups * n]));
    }
    c.op1(bfly_ir::Op::Matmul, &args)
}

/// Fuses `region` (an op and the elementwise ops after it) when it holds more than the op,
/// makes `out` the graph's output and prepares the case.
pub fn prepare_fused(mut c: Case, region: &[Value], out: Value) -> Prepared {
    if region.len() > 1 {
        fuse(&mut c, region);
    }
    c.out(out);
    c.prepare()
}

/// The rows `lo..hi` of a `[T, ..]` tensor (one step's share of a longer sequence).
pub fn rows(x: &Tensor, lo: usize, hi: usize) -> Tensor {
    let width = x.numel() / x.shape[0];
    let mut shape = x.shape.clone();
    shape[0] = hi - lo;
    match &x.data {
        Data::F(v) => Tensor::float(x.dtype, shape, v[lo * width..hi * width].to_vec()),
        Data::I(v) => Tensor::int(x.dtype, shape, v[lo * width..hi * width].to_vec()),
    }
}

/// `(stem, mode, program)` of every golden model lowered for inference (KV context from
/// the spec) and for one training step.
pub fn golden_programs() -> Vec<(String, Mode, KernelProgram)> {
    let mut out = Vec::new();
    for (stem, spec, file) in golden_specs() {
        for mode in [Mode::Infer, Mode::Train] {
            let g = graph_at(&spec, &file, mode, None);
            let lower = match mode {
                Mode::Infer => LowerMode::Inference {
                    context: spec.model.context.node,
                },
                _ => LowerMode::Training,
            };
            let p = lower_graph(&g, lower).unwrap_or_else(|e| panic!("{stem} {mode:?}: {e}"));
            out.push((stem.clone(), mode, p));
        }
    }
    out
}

/// `program` compiled once for the aarch64 backend with `features`, loaded with `weights`
/// on one executor per entry of `threads` (that many threads each).
#[cfg(target_arch = "aarch64")]
pub fn executors(
    program: &KernelProgram,
    weights: &bfly_targets::reference::Weights,
    features: CpuFeatures,
    threads: &[usize],
) -> Vec<bfly_targets::exec::Executor> {
    use bfly_targets::aarch64::Aarch64Program;
    use bfly_targets::cranelift::JitOptions;
    use bfly_targets::exec::Executor;
    use std::sync::Arc;
    let program = Arc::new(program.clone());
    let jit = Arc::new(
        Aarch64Program::compile(&program, features, JitOptions::code_only())
            .unwrap_or_else(|e| panic!("compiling for {features}: {e}")),
    );
    threads
        .iter()
        .map(|&n| {
            Executor::new(Arc::clone(&program), jit.clone(), weights, n)
                .unwrap_or_else(|e| panic!("loading: {e}"))
        })
        .collect()
}

/// The prepared case on the aarch64 backend with `threads` threads.
#[cfg(target_arch = "aarch64")]
pub fn executor(
    p: &Prepared,
    features: CpuFeatures,
    threads: usize,
) -> bfly_targets::exec::Executor {
    let mut exs = executors(&p.program, &p.weights, features, &[threads]);
    exs.pop().expect("one executor")
}

/// Runs the prepared case on the aarch64 backend with `threads` threads and compares
/// every output with the reference within `tol` (relative to max(1, max |want|)). A no-op
/// off aarch64 (nothing can execute the code there).
pub fn run_and_compare(p: &Prepared, features: CpuFeatures, threads: usize, tol: f64) {
    #[cfg(target_arch = "aarch64")]
    {
        let got = executor(p, features, threads)
            .step(&p.inputs, p.syms)
            .unwrap_or_else(|e| panic!("running: {e}"));
        p.compare(&got, tol);
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        let _ = (p, features, threads, tol);
    }
}
