//! The f16-weight GEMM microkernels (`quantize { dense = f16 }`): `gemm.f16w.dot` (f16
//! weights widened to f32, any CPU) and `gemm.f16.dot` (FEAT_FP16: FMLA `.8h` over bounded
//! chunks), on random shapes: odd N and K (1..3-column quads, k tails, K over several
//! f16 chunks), groups, T = 1 (decode) and T > 5 (a full tile and an edge tile), training
//! rows, 1 and 3 threads, bias and residual epilogues.
//!
//! The f16 sections are built from the f32 matmul case: the weights are rounded to f16
//! first (so the reference sees the same values), then the weight buffer and the gemm
//! body's weight param are switched to `F16` — the form the lowering produces for
//! `dense = f16` (loads widen f16 → f32 exactly; every other statement is the f32 one).
//!
//! Tolerances:
//! - f16w: bit-identical to `gemm.f32.dot` on the same (widened) weights — same FMLAs in the
//!   same order; plus 1e-5 against the f64 reference, as for f32 (see aarch64_gemm.rs).
//! - f16: derived in `kernels/gemm/dot_f16.rs`: |err| ≤ (CHUNK + 1)·u·S + K·2^-25 with
//!   u = 2^-11, CHUNK = 16 and S = Σ_k |x_k·w_k| of the output (narrowing x costs u·S, a
//!   chunk's f16 FMA sum γ_16·S, subnormal partial sums 2^-25 per step, the f32 adds
//!   K·2^-24·S); we allow 18·u·S + K·2^-25 plus the f32 tolerance 1e-5 for the epilogue's
//!   own roundings. The bound does not grow with K.

mod aarch64_common;
mod lower_common;

use aarch64_common::{expect_micro, features, matmul, prepare_fused};
use bfly_ir::DType;
use bfly_ir::init::SplitMix64;
use bfly_ir::kernel::KernelKind;
use bfly_targets::aarch64::{Aarch64Plan, CpuFeatures};
use bfly_targets::reference::Data;
use lower_common::*;

const TOL_F32: f64 = 1e-5;
const U16: f64 = 1.0 / 2048.0;
const CHUNK: f64 = 16.0;

#[derive(Clone, Copy, Debug)]
struct Shape {
    seed: u64,
    batch: Option<usize>,
    t: usize,
    groups: u64,
    n: u64,
    k: u64,
    bias: bool,
    residual: bool,
}

/// The f32 matmul case (weights rounded to f16), optionally with bias and `residual + y`.
fn build_f32(s: &Shape) -> Prepared {
    let mut c = Case::new(s.seed, s.batch, s.t);
    let y = matmul(&mut c, s.groups, s.n, s.k, s.bias);
    let data = c.weights.get_mut("p0").expect("the weight is p0");
    let Data::F(v) = &mut data.data else {
        panic!("float weight")
    };
    for e in v.iter_mut() {
        *e = half::f16::from_f64(*e).to_f64();
    }
    if s.residual {
        let res = c.act(s.groups * s.n);
        let out = c.op1(bfly_ir::Op::Add, &[res, y]);
        prepare_fused(c, &[y, out], out)
    } else {
        prepare_fused(c, &[y], y)
    }
}

/// The same case with the gemm's weight stored as f16 (buffer and body param).
fn to_f16(mut p: Prepared) -> Prepared {
    let mut switched = 0;
    let prog = &mut p.program;
    for k in &prog.kernels {
        if let KernelKind::Gemm(_) = k.kind {
            prog.bodies[k.body.0 as usize].params[1].dtype = DType::F16;
            prog.buffers[k.args[1].0 as usize].dtype = DType::F16;
            switched += 1;
        }
    }
    assert_eq!(switched, 1, "one gemm kernel");
    p
}

fn build(s: &Shape) -> (Prepared, Prepared) {
    let f32p = build_f32(s);
    let f16p = to_f16(build_f32(s));
    (f32p, f16p)
}

/// max over outputs of S = Σ_k |x_k·w_k| (the f16 error bound's scale).
fn abs_dot_scale(p: &Prepared, s: &Shape) -> f64 {
    let x = floats(&p.inputs[0]);
    let w = floats(&p.weights["p0"]);
    let (g, n, k) = (s.groups as usize, s.n as usize, s.k as usize);
    let rows = x.len() / (g * k);
    let mut worst: f64 = 0.0;
    for r in 0..rows {
        for gi in 0..g {
            for c in 0..n {
                let xr = &x[r * g * k + gi * k..][..k];
                let wr = &w[(gi * n + c) * k..][..k];
                let sum: f64 = xr.iter().zip(wr).map(|(a, b)| (a * b).abs()).sum();
                worst = worst.max(sum);
            }
        }
    }
    worst
}

/// The f16 kernel's tolerance relative to max(1, max |want|) (see the module doc).
fn f16_tol(p: &Prepared, s: &Shape) -> f64 {
    let abs = (CHUNK + 2.0) * U16 * abs_dot_scale(p, s) + s.k as f64 * 2f64.powi(-25);
    let scale = p
        .want
        .iter()
        .map(|t| max_abs(floats(t)))
        .fold(1.0_f64, f64::max);
    abs / scale + TOL_F32
}

fn shapes(count: usize, seed: u64) -> Vec<Shape> {
    let mut rng = SplitMix64::new(seed);
    let mut pick = |n: u64| rng.next_u64() % n;
    (0..count)
        .map(|i| {
            let n = [1, 3, 4, 5, 7, 9, 13, 20][pick(8) as usize];
            let k = [1, 3, 7, 8, 9, 16, 31, 64, 129, 136, 263, 300][pick(12) as usize];
            let t = if i % 3 == 0 { 1 } else { 6 + pick(3) as usize };
            Shape {
                seed: 700 + i as u64,
                batch: (i % 7 == 6).then(|| 1 + pick(3) as usize),
                t,
                groups: [1, 1, 2, 3][pick(4) as usize],
                n,
                k,
                bias: pick(2) == 1,
                residual: pick(2) == 1,
            }
        })
        .collect()
}

fn without_fp16(f: CpuFeatures) -> CpuFeatures {
    CpuFeatures { fp16: false, ..f }
}

fn assert_no_gemm_fallback(plan: &Aarch64Plan, what: &dyn std::fmt::Debug) {
    let fell: Vec<_> = plan
        .fallbacks
        .iter()
        .filter(|f| f.family == "gemm")
        .collect();
    assert!(fell.is_empty(), "{what:?}: {}", plan.fallback_report());
}

#[cfg(target_arch = "aarch64")]
fn run(p: &Prepared, f: CpuFeatures, threads: usize) -> Vec<bfly_targets::reference::Tensor> {
    aarch64_common::executor(p, f, threads)
        .step(&p.inputs, p.syms)
        .unwrap_or_else(|e| panic!("running: {e}"))
}

#[test]
fn f16w_is_bit_identical_to_the_f32_kernel_on_the_widened_weights() {
    let f = without_fp16(features());
    for s in shapes(36, 41) {
        let (p32, p16) = build(&s);
        let plan = expect_micro(&p16, f, "gemm.f16w.dot 5x4");
        assert_no_gemm_fallback(&plan, &s);
        expect_micro(&p32, f, "gemm.f32.dot");
        #[cfg(target_arch = "aarch64")]
        for threads in [1, 3] {
            let want = run(&p32, f, threads);
            let got = run(&p16, f, threads);
            p16.compare(&got, TOL_F32);
            for (a, b) in want.iter().zip(&got) {
                let (a, b) = (floats(a), floats(b));
                let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{s:?} threads {threads}: f16w differs from f32");
            }
        }
    }
}

#[test]
fn f16_fmla_8h_is_within_the_derived_bound() {
    let f = features();
    if !f.fp16 {
        // No FEAT_FP16 here (e.g. QEMU cortex-a53): the f16w test covers this CPU; check
        // that the selection falls back to it.
        let s = shapes(1, 5)[0];
        expect_micro(&build(&s).1, f, "gemm.f16w.dot");
        return;
    }
    for s in shapes(36, 43) {
        let p = build(&s).1;
        let plan = expect_micro(&p, f, "gemm.f16.dot 3x4");
        assert_no_gemm_fallback(&plan, &s);
        let tol = f16_tol(&p, &s);
        for threads in [1, 3] {
            aarch64_common::run_and_compare(&p, f, threads, tol);
        }
    }
}

#[test]
fn variants_follow_the_fp16_feature() {
    let s = Shape {
        k: 300,
        ..shapes(1, 9)[0]
    };
    let (p32, p16) = build(&s);
    let all = CpuFeatures::parse_target("aarch64+dotprod+fp16").unwrap();
    let dot = CpuFeatures::parse_target("aarch64+dotprod").unwrap();
    expect_micro(&p16, all, "gemm.f16.dot 3x4");
    expect_micro(&p16, dot, "gemm.f16w.dot 5x4");
    expect_micro(&p16, CpuFeatures::BASELINE, "gemm.f16w.dot 5x4");
    expect_micro(&p32, all, "gemm.f32.dot 5x4");
    // x narrowed on the stack would exceed 64 KiB (24 rows × 2800 halves): f16w instead.
    let big = Shape {
        k: 2800,
        batch: Some(3),
        t: 8,
        ..s
    };
    expect_micro(&build(&big).1, all, "gemm.f16w.dot 5x4");
}

#[test]
fn f16_kernels_mark_their_hot_loop() {
    let all = CpuFeatures::parse_target("aarch64+dotprod+fp16").unwrap();
    for (feat, variant, useful) in [
        (all, "gemm.f16.dot", 12),
        (CpuFeatures::BASELINE, "gemm.f16w.dot", 20),
    ] {
        for s in shapes(6, 3) {
            let s = Shape { k: 264, ..s };
            let p = build(&s).1;
            let plan = expect_micro(&p, feat, variant);
            for m in plan.micro.iter().filter(|m| m.family == "gemm") {
                let hot = m.micro.code.mark("hot_loop").expect("hot loop marked");
                let end = m.micro.code.mark("hot_loop_end").expect("hot loop end");
                assert!(hot < end, "{s:?}");
                assert_eq!(m.micro.useful_per_iter, useful, "{variant}");
                assert!(m.micro.tile.contains("v24"), "register-tile comment");
            }
        }
    }
}
