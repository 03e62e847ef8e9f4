//! The f32 GEMM microkernels: forward `gemm.f32.dot` (bias and fused epilogues) and the
//! backward `gemm_grad.f32.dx` / `gemm_grad.f32.dw` of `matmul.grad`, on random shapes.
//!
//! Shapes: N and K from 1 up (odd, non-multiples of 4: 1..3-column quads, the 4/2/1-column
//! tiles of the lowering, k tails), groups 1..=3 (with N not a multiple of 4, a quad would
//! straddle groups), T in 1..=8 (decode and several 5-row tiles) and B·T rows in training
//! mode, 1 and 3 threads (lo..hi splits of the column tiles / rows / weight rows).
//!
//! Tolerance, relative to max(1, max |want|) against the f64 reference: 1e-5, as the
//! lowering tests use for matmul. The kernels reassociate each f32 sum of K ≤ 64 products
//! of values in [−1, 1) (4-lane partial sums, FADDP, FMA): the rounding error of such a
//! sum is about √K·2^-24·|Σ| (≲ 5e-7 relative here) and bounded by K·2^-24·Σ|x·w|
//! (≈ 4e-6·Σ|x·w| ≤ 1e-5 of the scale for these sizes); `exp` is within ≈1 ulp and `tanh`
//! within ≈1e-7 absolute, and every epilogue step adds one f32 rounding.

mod aarch64_common;
mod lower_common;

use aarch64_common::{
    expect_micro, features, golden_programs, matmul, prepare_fused, run_and_compare,
};
use bfly_ir::init::SplitMix64;
use bfly_ir::{Dim, Op, Value};
use bfly_targets::aarch64::{Aarch64Plan, CpuFeatures};
use lower_common::*;

const TOL: f64 = 1e-5;

/// What follows the matmul inside its fused region.
#[derive(Clone, Copy, Debug)]
enum Tail {
    None,
    /// `residual + y` (the transformer's residual add).
    Residual,
    /// `silu(y) · up` (SwiGLU's gate).
    SiluMul,
    /// `gelu(y)`.
    Gelu,
    /// `y · 0.5 + residual` (an unfolded LoRA branch).
    ScaleAdd,
    /// `y − residual`, then `neg`, then `exp`.
    SubNegExp,
    /// `y · y`.
    Square,
    /// `y · s` with `s: [.., 1]` (one value per row, broadcast along the columns).
    RowScale,
    /// `y + e` with `e: [T, N]` broadcast over the batch (index `(row % T)·N + col`).
    PerToken,
}

const TAILS: [Tail; 9] = [
    Tail::None,
    Tail::Residual,
    Tail::SiluMul,
    Tail::Gelu,
    Tail::ScaleAdd,
    Tail::SubNegExp,
    Tail::Square,
    Tail::RowScale,
    Tail::PerToken,
];

#[derive(Clone, Copy, Debug)]
struct Shape {
    seed: u64,
    batch: Option<usize>,
    t: usize,
    groups: u64,
    n: u64,
    k: u64,
    bias: bool,
    tail: Tail,
}

fn build(s: &Shape) -> Prepared {
    let mut c = Case::new(s.seed, s.batch, s.t);
    let y = matmul(&mut c, s.groups, s.n, s.k, s.bias);
    let width = s.groups * s.n;
    let mut region = vec![y];
    let mut chain = |c: &mut Case, op: Op, args: &[Value]| {
        let v = c.op1(op, args);
        region.push(v);
        v
    };
    let out = match s.tail {
        Tail::None => y,
        Tail::Residual => {
            let res = c.act(width);
            chain(&mut c, Op::Add, &[res, y])
        }
        Tail::SiluMul => {
            let up = c.act(width);
            let g = chain(&mut c, Op::Silu, &[y]);
            chain(&mut c, Op::Mul, &[g, up])
        }
        Tail::Gelu => chain(&mut c, Op::Gelu, &[y]),
        Tail::ScaleAdd => {
            let res = c.act(width);
            let h = chain(&mut c, Op::Scale { factor: 0.5 }, &[y]);
            chain(&mut c, Op::Add, &[h, res])
        }
        Tail::SubNegExp => {
            let res = c.act(width);
            let d = chain(&mut c, Op::Sub, &[y, res]);
            let m = chain(&mut c, Op::Neg, &[d]);
            chain(&mut c, Op::Exp, &[m])
        }
        Tail::Square => chain(&mut c, Op::Mul, &[y, y]),
        Tail::RowScale => {
            let (mut dims, mut shape) = c.lead();
            dims.push(Dim::Const(1));
            shape.push(1);
            let s = c.input(dims, shape);
            chain(&mut c, Op::Mul, &[y, s])
        }
        Tail::PerToken => {
            let e = c.input(
                vec![Dim::sym("T"), Dim::Const(width)],
                vec![s.t, width as usize],
            );
            chain(&mut c, Op::Add, &[y, e])
        }
    };
    prepare_fused(c, &region, out)
}

/// Random shapes covering every column-tile width (N % 4), k tails (K % 4), groups, decode
/// (T = 1) and multi-tile row counts.
fn shapes(count: usize, seed: u64) -> Vec<Shape> {
    let mut rng = SplitMix64::new(seed);
    let mut pick = |n: u64| rng.next_u64() % n;
    (0..count)
        .map(|i| {
            let n = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 20, 33][pick(13) as usize];
            let k = [1, 2, 3, 4, 5, 7, 8, 12, 16, 17, 31, 64][pick(12) as usize];
            let t = if i % 4 == 0 { 1 } else { 2 + pick(7) as usize };
            let tail = TAILS[i % TAILS.len()];
            let training = i % 5 == 4 || matches!(tail, Tail::PerToken);
            Shape {
                seed: 500 + i as u64,
                batch: training.then(|| 1 + pick(3) as usize),
                t,
                groups: [1, 1, 2, 3][pick(4) as usize],
                n,
                k,
                bias: pick(2) == 1,
                tail,
            }
        })
        .collect()
}

fn assert_no_fallback(plan: &Aarch64Plan, family: &str, what: &dyn std::fmt::Debug) {
    let fell: Vec<_> = plan
        .fallbacks
        .iter()
        .filter(|f| f.family == family)
        .collect();
    assert!(fell.is_empty(), "{what:?}: {}", plan.fallback_report());
}

#[test]
fn forward_random_shapes_match_the_reference() {
    let f = features();
    for s in shapes(90, 17) {
        let p = build(&s);
        let plan = expect_micro(&p, f, "gemm.f32.dot");
        assert_no_fallback(&plan, "gemm", &s);
        for threads in [1, 3] {
            run_and_compare(&p, f, threads, TOL);
        }
    }
}

#[test]
fn forward_kernels_mark_their_hot_loop() {
    for s in shapes(8, 3) {
        let s = Shape { k: 64, ..s };
        let p = build(&s);
        let plan = expect_micro(&p, CpuFeatures::BASELINE, "gemm.f32.dot");
        for m in plan.micro.iter().filter(|m| m.family == "gemm") {
            let hot = m.micro.code.mark("hot_loop").expect("hot loop marked");
            let end = m.micro.code.mark("hot_loop_end").expect("hot loop end");
            assert!(hot < end, "{s:?}");
            assert_eq!(m.micro.useful_per_iter, 20, "5 rows × 4 columns of FMLA");
            assert!(m.micro.tile.contains("v25"), "register-tile comment");
        }
    }
}

/// `matmul.grad x, w [, bias], dy` → `dx, dw [, dbias]` in a training step.
fn build_grad(s: &Shape) -> Prepared {
    let mut c = Case::new(s.seed, Some(s.batch.unwrap_or(2)), s.t);
    let x = c.act(s.groups * s.k);
    let w = if s.groups == 1 {
        c.param(&[s.n, s.k])
    } else {
        c.param(&[s.groups, s.n, s.k])
    };
    let mut args = vec![x, w];
    if s.bias {
        args.push(c.param(&[s.groups * s.n]));
    }
    args.push(c.act(s.groups * s.n));
    for g in c.op(Op::Grad(Box::new(Op::Matmul)), &args) {
        c.out(g);
    }
    c.prepare()
}

/// Backward shapes: K a multiple of 4 (16-lane chunks and 4-lane remainders), N with and
/// without a j tail, groups, bias.
fn grad_shapes(count: usize, seed: u64) -> Vec<Shape> {
    let mut rng = SplitMix64::new(seed);
    let mut pick = |n: u64| rng.next_u64() % n;
    (0..count)
        .map(|i| Shape {
            seed: 900 + i as u64,
            batch: Some(1 + pick(3) as usize),
            t: 1 + pick(8) as usize,
            groups: [1, 1, 2, 3][pick(4) as usize],
            n: [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 20][pick(12) as usize],
            k: [4, 8, 12, 16, 20, 28, 32, 36, 64][pick(9) as usize],
            bias: pick(2) == 1,
            tail: Tail::None,
        })
        .collect()
}

#[test]
fn backward_random_shapes_match_the_reference() {
    let f = features();
    for s in grad_shapes(40, 23) {
        let p = build_grad(&s);
        let plan = expect_micro(&p, f, "gemm_grad.f32.dx");
        expect_micro(&p, f, "gemm_grad.f32.dw");
        assert_no_fallback(&plan, "backward.gemm", &s);
        for threads in [1, 3] {
            run_and_compare(&p, f, threads, TOL);
        }
    }
}

#[test]
fn backward_with_k_not_a_multiple_of_4_is_declined_with_a_reason() {
    let s = Shape {
        k: 6,
        ..grad_shapes(1, 5)[0]
    };
    let p = build_grad(&s);
    let plan = Aarch64Plan::emit(&p.program, CpuFeatures::BASELINE);
    let reasons: Vec<_> = plan
        .fallbacks
        .iter()
        .filter(|f| f.family == "backward.gemm")
        .filter_map(|f| f.reason.clone())
        .collect();
    assert_eq!(reasons.len(), 2, "{}", plan.fallback_report());
    assert!(
        reasons.iter().all(|r| r.contains("multiple of 4")),
        "{reasons:?}"
    );
    // Still correct: those sections run Cranelift's code.
    run_and_compare(&p, features(), 3, TOL);
}

#[test]
fn golden_models_run_every_f32_gemm_as_a_microkernel() {
    for (stem, mode, p) in golden_programs() {
        let plan = Aarch64Plan::emit(&p, CpuFeatures::BASELINE);
        let declined: Vec<_> = plan
            .fallbacks
            .iter()
            .filter(|f| f.family == "gemm" || f.family == "backward.gemm")
            .collect();
        assert!(declined.is_empty(), "{stem} {mode:?}: {declined:?}");
    }
}
