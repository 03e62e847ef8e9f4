//! The butterfly-backward microkernels (`butterfly_grad.f32.rows`, `butterfly_grad.f32.dtw`)
//! on random training cases: one `butterfly.grad` node (x, twiddles[, bias], dy → dx, dT[,
//! dbias]) with n_in in 2..=256 (n = 2..256, n < 8 must be declined), 1..3 stacks (padded
//! and truncated outputs), 1..2 groups, 1..2 blocks, both stride orders, B·T rows in 1..=12,
//! 1 and 3 threads (the rows section splits over rows, the dT section over
//! (slab, stage) — each split must write exactly the body's elements), and the real bodies of
//! the golden models' training programs.
//!
//! Tolerances:
//! - against the Kernel IR interpreter: **bit for bit** (tolerance 0). The kernels do the
//!   body's f32 operations in the body's order — every product rounded, then the sum
//!   (fmul + fadd, never fmla), the dT sums over rows in row order, dx over stacks in stack
//!   order — and copies are exact, so any difference is a bug;
//! - against the f64 reference: `max |Δ| ≤ 1e-4 · max(1, max |reference|)`, as
//!   `lower_grad.rs` uses for the same lowering on the interpreter: f32 (unit roundoff 6e-8)
//!   through at most 2·stages ≤ 32 butterfly stages for dx and a sum of ≤ 12 rows for dT,
//!   with inputs in [−1, 1), stays around 1e-6 of the magnitudes involved, while a wrong
//!   index, pair, twiddle entry or missing row is an O(0.1–1) error.

mod aarch64_common;
mod lower_common;

use aarch64_common::{expect_micro, features};
use bfly_ir::init::SplitMix64;
use bfly_ir::{Op, StrideOrder};
use bfly_targets::aarch64::Aarch64Plan;
use lower_common::*;

const TOL: f64 = 1e-4;

/// Runs the case on the aarch64 backend once per entry of `threads` (that many threads):
/// each run within [`TOL`] of the reference, and bit-identical to the Kernel IR interpreter.
/// A no-op off aarch64.
///
/// The program is compiled once and the interpreter runs once per case, shared by every
/// thread count: both are deterministic functions of the case, so repeating them per thread
/// count (as this helper once did, twice per count) re-checked nothing and cost most of this
/// binary's time under QEMU. Each thread count still gets its own fresh executor and run.
fn run_and_check(p: &Prepared, threads: &[usize]) {
    #[cfg(target_arch = "aarch64")]
    {
        use bfly_targets::interp::run_program;
        let want = run_program(&p.program, &p.weights, &p.inputs, p.syms)
            .unwrap_or_else(|e| panic!("interpreter: {e}"));
        let executors = aarch64_common::executors(&p.program, &p.weights, features(), threads);
        for (mut exec, n) in executors.into_iter().zip(threads) {
            let got = exec
                .step(&p.inputs, p.syms)
                .unwrap_or_else(|e| panic!("{n} threads: {e}"));
            p.compare(&got, TOL);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let (g, w) = (floats(g), floats(w));
                let bad = g
                    .iter()
                    .zip(w)
                    .position(|(a, b)| a.to_bits() != b.to_bits());
                assert!(
                    bad.is_none(),
                    "{n} threads, output {i}, element {bad:?}: aarch64 {:?} vs interpreter {:?}",
                    bad.map(|j| g[j]),
                    bad.map(|j| w[j])
                );
            }
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        let _ = (p, threads, TOL);
    }
}

#[derive(Clone, Copy, Debug)]
struct Shape {
    seed: u64,
    b: usize,
    t: usize,
    n_in: u64,
    n_out: u64,
    groups: u64,
    blocks: u64,
    increasing: bool,
    bias: bool,
}

impl Shape {
    fn n(&self) -> u64 {
        self.n_in.max(2).next_power_of_two()
    }

    fn random(seed: u64) -> Shape {
        let mut r = SplitMix64::new(seed);
        let mut int = |lo: u64, hi: u64| lo + r.next_u64() % (hi - lo + 1);
        let n_in = int(2, 256);
        let n = n_in.next_power_of_two();
        let n_out = int(1, 3 * n);
        let (groups, blocks) = (int(1, 2), int(1, 2));
        let increasing = int(0, 1) == 1;
        let bias = int(0, 1) == 1;
        let b = int(1, 3) as usize;
        let t = int(1, (12 / b).min(8) as u64) as usize;
        Shape {
            seed,
            b,
            t,
            n_in,
            n_out,
            groups,
            blocks,
            increasing,
            bias,
        }
    }
}

/// A training-mode case of one `butterfly.grad` node; every result is an output.
fn build(s: &Shape) -> Prepared {
    let mut c = Case::new(s.seed, Some(s.b), s.t);
    let n = s.n();
    let l = u64::from(n.trailing_zeros());
    let stacks = s.n_out.div_ceil(n);
    let x = c.act(s.groups * s.n_in);
    let tw = c.param(&[s.groups, stacks, s.blocks, l, n / 2, 2, 2]);
    let mut args = vec![x, tw];
    if s.bias {
        args.push(c.param(&[s.groups * s.n_out]));
    }
    args.push(c.act(s.groups * s.n_out));
    let stride = if s.increasing {
        StrideOrder::Increasing
    } else {
        StrideOrder::Decreasing
    };
    let op = Op::Grad(Box::new(Op::Butterfly {
        n_in: s.n_in,
        n_out: s.n_out,
        stride,
    }));
    for r in c.op(op, &args) {
        c.out(r);
    }
    c.prepare()
}

/// Asserts both sections got their microkernel (or, for n < 8, that the family declined).
fn check_selection(p: &Prepared, s: &Shape) -> Aarch64Plan {
    let f = features();
    if s.n() < 8 {
        let plan = Aarch64Plan::emit(&p.program, f);
        assert!(
            plan.fallbacks.iter().any(|fb| fb
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("fewer than 4 pairs"))),
            "{s:?}: n < 8 must be declined\n{}",
            plan.fallback_report()
        );
        return plan;
    }
    let plan = expect_micro(p, f, "butterfly_grad.f32.rows");
    expect_micro(p, f, "butterfly_grad.f32.dtw");
    plan
}

#[test]
fn random_cases_match_the_reference() {
    for seed in 0..40u64 {
        let s = Shape::random(0xb0f1 + seed);
        let p = build(&s);
        check_selection(&p, &s);
        run_and_check(&p, &[1, 3]);
    }
}

/// The layout corner cases: the smallest vector case (n = 8: 4-pair chunks), strides ≥ 8
/// (n = 32, 256), an input narrower than n with one stack (no direct dx), one unpadded
/// stack (the last stage writes dx), many stacks with a truncated last one, one row.
#[test]
fn corner_shapes_match_the_reference() {
    let shapes = [
        (8, 8, 1, 1, true, false, 1, 1),
        (5, 8, 1, 2, false, true, 2, 3),
        (8, 20, 2, 1, true, false, 3, 4),
        (32, 32, 1, 2, true, false, 1, 1),
        (32, 95, 2, 2, false, true, 2, 5),
        (17, 17, 1, 1, false, false, 3, 4),
        (256, 256, 1, 1, true, false, 2, 2),
        (200, 700, 1, 2, false, true, 3, 4),
        (64, 16, 1, 1, true, false, 1, 7),
    ];
    for (i, &(n_in, n_out, groups, blocks, increasing, bias, b, t)) in shapes.iter().enumerate() {
        let s = Shape {
            seed: 77 + i as u64,
            b,
            t,
            n_in,
            n_out,
            groups,
            blocks,
            increasing,
            bias,
        };
        let p = build(&s);
        check_selection(&p, &s);
        run_and_check(&p, &[1, 3]);
    }
}

#[test]
fn tiny_n_is_declined() {
    for n_in in [2, 3, 4] {
        let s = Shape {
            seed: n_in,
            b: 2,
            t: 3,
            n_in,
            n_out: n_in,
            groups: 1,
            blocks: 2,
            increasing: true,
            bias: false,
        };
        let p = build(&s);
        check_selection(&p, &s);
        run_and_check(&p, &[3]);
    }
}

/// Every `backward.butterfly` body of the golden models' training programs gets both
/// microkernels (the real bodies, not just this file's one-node graphs); the bias section
/// is the only declined one.
#[test]
fn golden_training_bodies_are_matched() {
    use bfly_compiler::Mode;
    use bfly_targets::lower::{LowerMode, lower_graph};
    let f = features();
    let mut seen = 0;
    for (stem, spec, file) in golden_specs() {
        let g = graph_at(&spec, &file, Mode::Train, None);
        let program = lower_graph(&g, LowerMode::Training).unwrap_or_else(|e| panic!("{e}"));
        let plan = Aarch64Plan::emit(&program, f);
        for fb in &plan.fallbacks {
            if fb.family != "backward.butterfly" {
                continue;
            }
            let why = fb.reason.as_deref().unwrap_or("no family");
            assert!(
                fb.section == 2 && why.contains("bias"),
                "{stem}: {} section {} fell back: {why}",
                fb.kernel,
                fb.section
            );
        }
        let n = plan
            .micro
            .iter()
            .filter(|m| m.family == "backward.butterfly")
            .count();
        seen += n;
    }
    assert!(seen > 0, "no golden model has a butterfly backward");
}
