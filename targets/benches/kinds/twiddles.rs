//! The weight-time kinds of a DIB butterfly layer: the twiddle producer (`cos`/`sin` of θ
//! times the diagonals) and the pack of `[L, n/2, 2, 2]` twiddles into the butterfly's
//! `[L, 4, n/2]` layout. Inference runs both once at load; a training step runs them every
//! step, so they are timed in a training program (`B = 1`), each kernel on its own.

use crate::common::{family_time, graph, jit_train, random, rel_err, tensor, time, to_f32};
use crate::{Case, T, butterfly};
use bfly_targets::exec::Syms;
use std::hint::black_box;

/// `dib_twiddles`, stride doubling per stage: pair `j` of stage `s` (stride `st`) joins
/// elements `lo = 2j − j mod st` and `lo + st`, whose diagonal entries scale the rotation.
/// Pairs are walked as blocks of `st` (no division, as the JIT's constant strides), as
/// zipped slices.
fn dib(theta: &[f32], diag: &[f32], tw: &mut [f32], n: usize) {
    let h = n / 2;
    for s in 0..n.trailing_zeros() as usize {
        let st = 1 << s;
        let stage = theta[s * h..(s + 1) * h]
            .chunks_exact(st)
            .zip(diag[s * n..(s + 1) * n].chunks_exact(2 * st))
            .zip(tw[s * h * 4..(s + 1) * h * 4].chunks_exact_mut(4 * st));
        for ((thb, db), twb) in stage {
            let (d0s, d1s) = db.split_at(st);
            let pairs = thb.iter().zip(d0s).zip(d1s);
            for (((&th, &d0), &d1), out) in pairs.zip(twb.chunks_exact_mut(4)) {
                let (c, sn) = (th.cos(), th.sin());
                out[0] = d0 * c;
                out[1] = -(d0 * sn);
                out[2] = d1 * sn;
                out[3] = d1 * c;
            }
        }
    }
}

/// `[L, n/2, 2, 2]` → `[L, 4, n/2]`, one strided read per element, as lowered.
fn pack(tw: &[f32], packed: &mut [f32], n: usize) {
    let h = n / 2;
    for s in 0..n.trailing_zeros() as usize {
        for c in 0..4 {
            let row = &mut packed[(s * 4 + c) * h..(s * 4 + c + 1) * h];
            for (o, w) in row.iter_mut().zip(tw[s * h * 4..].chunks_exact(4)) {
                *o = w[c];
            }
        }
    }
}

/// Rows `twiddles.dib` and `layout.pack`, from one program: dib → pack → butterfly.
pub fn run_dib_and_pack(n: usize) -> Vec<(&'static str, Result<Case, String>)> {
    match dib_and_pack(n) {
        Ok(rows) => rows.into_iter().map(|c| (c.name, Ok(c))).collect(),
        Err(e) => vec![("twiddles.dib, layout.pack", Err(e))],
    }
}

fn dib_and_pack(n: usize) -> Result<Vec<Case>, String> {
    let (l, h) = (n.trailing_zeros() as usize, n / 2);
    let tw_ty = format!("f32[1, 1, 1, {l}, {h}, 2, 2]");
    let text = format!(
        "graph @dib(%x: f32[B, T, {n}]) -> (%tw: {tw_ty}, %y: f32[B, T, {n}]) \
         where B <= 1, T <= {T} {{\n\
         param @theta: f32[1, 1, 1, {l}, {h}] init normal(0.5) trainable\n\
         param @diag: f32[1, 1, 1, {l}, {n}] init normal(1.0) trainable\n\
         %0 = dib_twiddles @theta, @diag {{stride = increasing}} : {tw_ty}\n\
         %1 = butterfly %x, %0 {{in = {n}, out = {n}, stride = increasing}} : f32[B, T, {n}]\n\
         return %0, %1\n}}\n"
    );
    let mut j = jit_train(&graph("dib", &text)?, 1)?;
    let (theta, diag) = (to_f32(&j.weights["theta"]), to_f32(&j.weights["diag"]));
    let x = random(T * n, 16);
    let inputs = [tensor(vec![1, T, n], &x)];
    let syms = Syms::batch(1, T);
    let jit_dib = family_time(&mut j.ex, &inputs, syms, "twiddles.dib")?;
    let jit_pack = family_time(&mut j.ex, &inputs, syms, "layout.pack")?;
    let mut tw = vec![0f32; l * h * 4];
    let llvm_dib = time(|| dib(black_box(&theta), &diag, &mut tw, n));
    let mut packed = vec![0f32; l * h * 4];
    let llvm_pack = time(|| pack(black_box(&tw), &mut packed, n));
    let out = j.ex.step(&inputs, syms).map_err(|e| e.to_string())?;
    // The packed twiddles are internal: judge them by the butterfly they feed.
    let mut y = vec![0f32; T * n];
    butterfly(&x, &packed, &mut y, n);
    Ok(vec![
        Case {
            name: "twiddles.dib",
            shape: format!("{l} stages × {h} pairs"),
            jit: jit_dib,
            llvm: llvm_dib,
            err: rel_err(&to_f32(&out[0]), &tw),
        },
        Case {
            name: "layout.pack",
            shape: format!("[{l},{h},2,2] → [{l},4,{h}]"),
            jit: jit_pack,
            llvm: llvm_pack,
            err: rel_err(&to_f32(&out[1]), &y),
        },
    ])
}
