//! The row microkernels (`rows.f32.rmsnorm`, `rows.f32.layernorm`, `rows.f32.softmax`) on
//! random shapes: cols 3..=300 (16-float loop steps, whole vectors and 1..3 tail floats),
//! T in 1..=8 (inference) and B·T rows (training), 1 and 3 threads.
//!
//! Tolerance 2e-5 of max(1, max |y|) against the f64 reference: the kernels do the body's
//! f32 operations in its order except the association of the row sums (≤ cols·2^-24
//! relative on Σx², ≤ 300 here, halved again by the square root) and exp (≈ 1 ulp).
//! The wide-range softmax case checks exp over its whole domain (arguments down to −180:
//! subnormal results and flushes to 0) element by element: relative error ≤ 1e-6 plus the
//! rounding of the body's own f32 `x − max` (≤ |x − max|·2^-24, up to 1e-5 at −180)
//! where the result is a normal float, absolute ≤ 1e-37 elsewhere.

mod aarch64_common;
mod lower_common;

use aarch64_common::{expect_micro, features, run_and_compare};
use bfly_ir::Op;
use bfly_ir::init::SplitMix64;
use lower_common::*;

const TOL: f64 = 2e-5;

fn row_case(seed: u64, batch: Option<usize>, t: usize, cols: u64) -> Prepared {
    let mut c = Case::new(seed, batch, t);
    let x = c.act(cols);
    let g = c.param(&[cols]);
    let b = c.param(&[cols]);
    let rms = c.op1(Op::RmsNorm { eps: 1e-5 }, &[x, g]);
    let ln = c.op1(Op::LayerNorm { eps: 1e-6 }, &[x, g, b]);
    let sm = c.op1(Op::Softmax, &[x]);
    for v in [rms, ln, sm] {
        c.out(v);
    }
    c.prepare()
}

#[test]
fn rows_match_the_reference_on_random_shapes() {
    let f = features();
    let mut rng = SplitMix64::new(0x5eed_0001);
    let mut cols_seen = vec![3u64, 4, 15, 16, 17, 300];
    for _ in 0..14 {
        cols_seen.push(3 + rng.next_u64() % 298);
    }
    for (i, &cols) in cols_seen.iter().enumerate() {
        let t = 1 + (rng.next_u64() % 8) as usize;
        let batch = (i % 3 == 2).then(|| 1 + (rng.next_u64() % 3) as usize);
        let p = row_case(rng.next_u64(), batch, t, cols);
        for variant in ["rows.f32.rmsnorm", "rows.f32.layernorm", "rows.f32.softmax"] {
            expect_micro(&p, f, variant);
        }
        for threads in [1, 3] {
            run_and_compare(&p, f, threads, TOL);
        }
    }
}

#[test]
fn softmax_exp_over_its_whole_range() {
    let f = features();
    let cols = 37;
    let mut c = Case::new(7, None, 8);
    let x = c.act(cols);
    let y = c.op1(Op::Softmax, &[x]);
    c.out(y);
    let mut p = c.prepare();
    // x in [−90, 90): x − max reaches −180, past exp's underflow to 0 at ≈ −103.9.
    let mut rng = SplitMix64::new(11);
    let data: Vec<f64> = (0..8 * cols)
        .map(|_| f64::from((rng.next_f64() * 180.0 - 90.0) as f32))
        .collect();
    p.inputs[0] = bfly_targets::reference::Tensor::f32(vec![8, cols as usize], data);
    p.want = eval(&p.g, &p.inputs, &p.weights);
    expect_micro(&p, f, "rows.f32.softmax");
    for threads in [1, 3] {
        if let Some(got) = run(&p, threads) {
            let (want, got) = (floats(&p.want[0]), floats(&got[0]));
            let x = floats(&p.inputs[0]);
            let mut bad = Vec::new();
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                let row = &x[i / cols as usize * cols as usize..][..cols as usize];
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                // The body's f32 `x − max` rounds by ≤ |x − max|·2^-24 (exact in f64),
                // which exp turns into the same relative error; 2^-23 leaves slack.
                let rel = 1e-6 + (x[i] - max).abs() * 2f64.powi(-23);
                let ok = if w.abs() >= f64::from(f32::MIN_POSITIVE) {
                    ((g - w) / w).abs() <= rel
                } else {
                    (g - w).abs() <= 1e-37
                };
                if !ok {
                    bad.push(format!("[{i}] x {:.3} want {w:e} got {g:e}", x[i]));
                }
            }
            assert!(
                bad.is_empty(),
                "{} bad elements:\n{}",
                bad.len(),
                bad.join("\n")
            );
        }
    }
}

/// Runs `p` on the aarch64 backend (`None` elsewhere: nothing can execute the code).
fn run(p: &Prepared, threads: usize) -> Option<Vec<bfly_targets::reference::Tensor>> {
    #[cfg(target_arch = "aarch64")]
    {
        use bfly_targets::aarch64::Aarch64Program;
        use bfly_targets::cranelift::JitOptions;
        use bfly_targets::exec::Executor;
        use std::sync::Arc;
        let program = Arc::new(p.program.clone());
        let jit = Aarch64Program::compile(&program, features(), JitOptions::code_only())
            .unwrap_or_else(|e| panic!("compiling: {e}"));
        let mut exec = Executor::new(program, Arc::new(jit), &p.weights, threads)
            .unwrap_or_else(|e| panic!("loading: {e}"));
        Some(
            exec.step(&p.inputs, p.syms)
                .unwrap_or_else(|e| panic!("running: {e}")),
        )
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        let _ = (p, threads);
        None
    }
}
