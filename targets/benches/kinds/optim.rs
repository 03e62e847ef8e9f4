//! The adamw update of one weight matrix, in place, as a training step runs it.

use crate::Case;
use crate::common::{family_time, graph, jit_train, random, rel_err, tensor, time, to_f32};
use bfly_targets::exec::Syms;
use std::hint::black_box;

const LR: f64 = 3e-4;
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.95;
const EPS: f64 = 1e-8;
const WD: f64 = 0.01;
/// The optimizer's step input: far enough from 1 that both bias corrections matter.
const STEP: f32 = 10.0;

/// `1 − eᵃ` for `a ≤ 0`, by the lowering's series near 0 (where `1 − exp` cancels).
fn one_minus_exp(a: f32) -> f32 {
    if a.abs() < 0.1 {
        -a * (1.0
            + a * (0.5
                + a * (0.166_666_67
                    + a * (0.041_666_668 + a * (0.008_333_334 + a * 0.001_388_888_9)))))
    } else {
        1.0 - a.exp()
    }
}

/// adamw as lowered: chunks of 256 elements, each computing the bias corrections
/// `1/(1 − βᵗ)` from `t·ln β`, then the moment updates and the decayed step.
fn adamw(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: f32) {
    let (b1, b2) = (BETA1 as f32, BETA2 as f32);
    let (c1, c2) = ((1.0 - BETA1) as f32, (1.0 - BETA2) as f32);
    let (ln1, ln2) = (BETA1.ln() as f32, BETA2.ln() as f32);
    let (lr, eps, wd) = (LR as f32, EPS as f32, WD as f32);
    let chunks = p
        .chunks_mut(256)
        .zip(g.chunks(256))
        .zip(m.chunks_mut(256).zip(v.chunks_mut(256)));
    for ((pc, gc), (mc, vc)) in chunks {
        let bc1 = 1.0 / one_minus_exp(step * ln1);
        let bc2 = 1.0 / one_minus_exp(step * ln2);
        for (((pv, &gv), mv), vv) in pc.iter_mut().zip(gc).zip(mc).zip(vc) {
            *mv = b1 * *mv + c1 * gv;
            *vv = b2 * *vv + c2 * gv * gv;
            *pv -= lr * (*mv * bc1 / ((*vv * bc2).sqrt() + eps) + wd * *pv);
        }
    }
}

pub fn run_adamw(rows: usize, cols: usize) -> Result<Case, String> {
    let ty = format!("f32[{rows}, {cols}]");
    let text = format!(
        "graph @adam(%g: {ty}, %step: f32[]) -> (@p: {ty}, @p.adam_m: {ty}, @p.adam_v: {ty}) \
         where B <= 1, T <= 64 {{\n\
         param @p: {ty} init normal(0.02) trainable\n\
         param @p.adam_m: {ty} init zeros frozen\n\
         param @p.adam_v: {ty} init zeros frozen\n\
         %0, %1, %2 = adamw @p, %g, @p.adam_m, @p.adam_v, %step {{lr = {LR}, beta1 = {BETA1}, \
         beta2 = {BETA2}, eps = {EPS}, weight_decay = {WD}}} : {ty}, {ty}, {ty}\n\
         return %0, %1, %2\n}}\n"
    );
    let mut j = jit_train(&graph("adam", &text)?, 1)?;
    let n = rows * cols;
    let mut p = to_f32(&j.weights["p"]);
    let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
    let g = random(n, 25);
    let inputs = [tensor(vec![rows, cols], &g), tensor(vec![], &[STEP])];
    let syms = Syms::batch(1, 1);
    // Compare one update from the same state first: timing keeps updating in place.
    let out = j.ex.step(&inputs, syms).map_err(|e| e.to_string())?;
    adamw(&mut p, &g, &mut m, &mut v, STEP);
    let err = [&p, &m, &v]
        .iter()
        .zip(&out)
        .map(|(want, got)| rel_err(&to_f32(got), want))
        .fold(0.0, f64::max);
    let jt = family_time(&mut j.ex, &inputs, syms, "optimizer.adamw")?;
    let lt = time(|| adamw(black_box(&mut p), &g, &mut m, &mut v, STEP));
    Ok(Case {
        name: "optimizer.adamw",
        shape: format!("[{rows},{cols}] in place"),
        jit: jt,
        llvm: lt,
        err,
    })
}
