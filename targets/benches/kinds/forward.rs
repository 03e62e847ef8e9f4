//! Forward kinds in inference: monarch, rope, embed (a gather) and concat.

use crate::common::{family_time, graph, jit, random, rel_err, step_time, tensor, time, to_f32};
use crate::{Case, T, dot4};
use bfly_ir::DType;
use bfly_targets::exec::Syms;
use bfly_targets::reference::Tensor;
use std::hint::black_box;

/// Monarch `n = nb²` with `nb × nb` blocks, as lowered: per row, the first block-diagonal
/// factor into the transposed scratch `z`, then the second one from `z`, every dot a
/// `vector for` reduction (4 lane accumulators).
fn monarch(x: &[f32], w1: &[f32], w2: &[f32], z: &mut [f32], y: &mut [f32], nb: usize) {
    let n = nb * nb;
    for t in 0..T {
        let xr = &x[t * n..(t + 1) * n];
        let zr = &mut z[t * n..(t + 1) * n];
        for i1 in 0..nb {
            for i2 in 0..nb {
                let w = &w1[(i1 * nb + i2) * nb..(i1 * nb + i2 + 1) * nb];
                zr[i2 * nb + i1] = dot4(w, &xr[i1 * nb..(i1 + 1) * nb]);
            }
        }
        let yr = &mut y[t * n..(t + 1) * n];
        for (i4, o) in yr.iter_mut().enumerate() {
            let (a4, a5) = (i4 % nb, i4 / nb);
            let w = &w2[(a4 * nb + a5) * nb..(a4 * nb + a5 + 1) * nb];
            *o = dot4(w, &zr[a4 * nb..(a4 + 1) * nb]);
        }
    }
}

pub fn run_monarch(nb: usize) -> Result<Case, String> {
    let n = nb * nb;
    let text = format!(
        "graph @mon(%x: f32[T, {n}]) -> (%y: f32[T, {n}]) where T <= {T} {{\n\
         param @w1: f32[1, {nb}, {nb}, {nb}] init normal(0.1) trainable\n\
         param @w2: f32[1, {nb}, {nb}, {nb}] init normal(0.1) trainable\n\
         %0 = monarch %x, @w1, @w2 {{in = {n}, out = {n}}} : f32[T, {n}]\n\
         return %0\n}}\n"
    );
    let mut j = jit(&graph("mon", &text)?, 1)?;
    let (w1, w2) = (to_f32(&j.weights["w1"]), to_f32(&j.weights["w2"]));
    let x = random(T * n, 11);
    let inputs = [tensor(vec![T, n], &x)];
    let jt = family_time(&mut j.ex, &inputs, Syms::tokens(T), "monarch")?;
    let (mut z, mut y) = (vec![0f32; T * n], vec![0f32; T * n]);
    let lt = time(|| monarch(black_box(&x), &w1, &w2, &mut z, &mut y, nb));
    let got = to_f32(
        &j.ex
            .step(&inputs, Syms::tokens(T))
            .map_err(|e| e.to_string())?[0],
    );
    Ok(Case {
        name: "monarch",
        shape: format!("[{T},{n}], {nb}×{nb} blocks"),
        jit: jt,
        llvm: lt,
        err: rel_err(&got, &y),
    })
}

/// The load-phase cos/sin table of positions `0..T` (not timed): as `table_kernel`,
/// frequencies computed in f64 and rounded to f32, angles in f32.
fn rope_table(hd: usize, base: f64) -> Vec<f32> {
    let half = hd / 2;
    let mut table = vec![0f32; T * hd];
    for p in 0..T {
        for j in 0..half {
            let freq = base.powf(-((2 * j) as f64) / hd as f64) as f32;
            let a = p as f32 * freq;
            table[(p * half + j) * 2] = a.cos();
            table[(p * half + j) * 2 + 1] = a.sin();
        }
    }
    table
}

/// Rope at `pos = 0`: per row and head, rotate the pairs `(j, j + half)` by the row's
/// table entry (zipped slices: no bounds checks per element).
fn rope(x: &[f32], table: &[f32], y: &mut [f32], n: usize, hd: usize) {
    let half = hd / 2;
    for t in 0..T {
        let tb = &table[t * hd..(t + 1) * hd];
        let heads = x[t * n..(t + 1) * n]
            .chunks_exact(hd)
            .zip(y[t * n..(t + 1) * n].chunks_exact_mut(hd));
        for (xh, yh) in heads {
            let (xl, xu) = xh.split_at(half);
            let (yl, yu) = yh.split_at_mut(half);
            let lanes = yl.iter_mut().zip(yu).zip(xl.iter().zip(xu));
            for (((ol, ou), (&lo, &hi)), cs) in lanes.zip(tb.chunks_exact(2)) {
                let (c, s) = (cs[0], cs[1]);
                *ol = lo * c - hi * s;
                *ou = lo * s + hi * c;
            }
        }
    }
}

pub fn run_rope(n: usize, heads: usize) -> Result<Case, String> {
    let text = format!(
        "graph @rope(%x: f32[T, {n}]) -> (%y: f32[T, {n}]) where T <= {T} {{\n\
         %0 = rope %x {{heads = {heads}, base = 10000.0}} : f32[T, {n}]\n\
         return %0\n}}\n"
    );
    let mut j = jit(&graph("rope", &text)?, 1)?;
    let hd = n / heads;
    let table = rope_table(hd, 10000.0);
    let x = random(T * n, 12);
    let inputs = [tensor(vec![T, n], &x)];
    let jt = family_time(&mut j.ex, &inputs, Syms::tokens(T), "rope")?;
    let mut y = vec![0f32; T * n];
    let lt = time(|| rope(black_box(&x), &table, &mut y, n, hd));
    let got = to_f32(
        &j.ex
            .step(&inputs, Syms::tokens(T))
            .map_err(|e| e.to_string())?[0],
    );
    Ok(Case {
        name: "rope",
        shape: format!("[{T},{n}], {heads} heads"),
        jit: jt,
        llvm: lt,
        err: rel_err(&got, &y),
    })
}

/// Embedding gather: each row copies the table row of its (clamped) id.
fn embed(ids: &[i32], table: &[f32], y: &mut [f32], vocab: usize, dim: usize) {
    for (t, &id) in ids.iter().enumerate() {
        let a0 = id.clamp(0, vocab as i32 - 1) as usize;
        y[t * dim..(t + 1) * dim].copy_from_slice(&table[a0 * dim..(a0 + 1) * dim]);
    }
}

pub fn run_embed(vocab: usize, dim: usize) -> Result<Case, String> {
    let text = format!(
        "graph @emb(%ids: i32[T]) -> (%y: f32[T, {dim}]) where T <= {T} {{\n\
         param @table: f32[{vocab}, {dim}] init normal(0.02) trainable\n\
         %0 = embed %ids, @table : f32[T, {dim}]\n\
         return %0\n}}\n"
    );
    let mut j = jit(&graph("emb", &text)?, 1)?;
    let table = to_f32(&j.weights["table"]);
    // Ids spread over the whole table (rows mostly not in cache, as in a real model).
    let ids: Vec<i32> = random(T, 13)
        .iter()
        .map(|v| ((v * 0.5 + 0.5) * vocab as f32) as i32)
        .collect();
    let inputs = [Tensor::int(
        DType::I32,
        vec![T],
        ids.iter().map(|&i| i64::from(i)).collect(),
    )];
    let jt = step_time(&mut j.ex, &inputs, Syms::tokens(T))?;
    let mut y = vec![0f32; T * dim];
    let lt = time(|| embed(black_box(&ids), &table, &mut y, vocab, dim));
    let got = to_f32(
        &j.ex
            .step(&inputs, Syms::tokens(T))
            .map_err(|e| e.to_string())?[0],
    );
    Ok(Case {
        name: "embed",
        shape: format!("{T} ids of [{vocab},{dim}]"),
        jit: jt,
        llvm: lt,
        err: rel_err(&got, &y),
    })
}

/// Concat along the last axis: per row, both parts copied in turn.
fn concat(a: &[f32], b: &[f32], y: &mut [f32], w: usize) {
    for t in 0..T {
        y[t * 2 * w..t * 2 * w + w].copy_from_slice(&a[t * w..(t + 1) * w]);
        y[t * 2 * w + w..(t + 1) * 2 * w].copy_from_slice(&b[t * w..(t + 1) * w]);
    }
}

pub fn run_concat(w: usize) -> Result<Case, String> {
    let n = 2 * w;
    let text = format!(
        "graph @cat(%a: f32[T, {w}], %b: f32[T, {w}]) -> (%y: f32[T, {n}]) where T <= {T} {{\n\
         %0 = concat %a, %b {{axis = 1}} : f32[T, {n}]\n\
         return %0\n}}\n"
    );
    let mut j = jit(&graph("cat", &text)?, 1)?;
    let (a, b) = (random(T * w, 14), random(T * w, 15));
    let inputs = [tensor(vec![T, w], &a), tensor(vec![T, w], &b)];
    let jt = family_time(&mut j.ex, &inputs, Syms::tokens(T), "layout.concat")?;
    let mut y = vec![0f32; T * n];
    let lt = time(|| concat(black_box(&a), &b, &mut y, w));
    let got = to_f32(
        &j.ex
            .step(&inputs, Syms::tokens(T))
            .map_err(|e| e.to_string())?[0],
    );
    Ok(Case {
        name: "layout.concat",
        shape: format!("[{T},{w}] ++ [{T},{w}]"),
        jit: jt,
        llvm: lt,
        err: rel_err(&got, &y),
    })
}
