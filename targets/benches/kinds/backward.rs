//! Backward kinds, lowered for training (`B = 1`, so rows = `T`): butterfly (saved
//! stages), causal attention (recomputing scores, flash style) and rmsnorm.

use crate::common::{family_time, graph, jit_train, random, rel_err, tensor, time, to_f32};
use crate::{Case, T, dot4};
use bfly_targets::exec::Syms;
use std::hint::black_box;

/// Offset of row `t` of saved stage `s` (`[stages, rows, n]`).
fn slot(s: usize, t: usize, n: usize) -> usize {
    (s * T + t) * n
}

/// Stage `s` of a butterfly (twiddles `[L, n/2, 2, 2]`) from `src` into `dst`, pairs
/// `(lo, lo + st)` walked as blocks of `2·st` split in halves (slices, so LLVM sees no
/// bounds to check per pair); `transposed` applies the stage's transpose (the backward of
/// the data path).
fn stage(src: &[f32], dst: &mut [f32], tw: &[f32], s: usize, transposed: bool) {
    let (h, st) = (src.len() / 2, 1 << s);
    let (b1, c1) = if transposed { (2, 1) } else { (1, 2) };
    let tws = tw[s * h * 4..(s + 1) * h * 4].chunks_exact(4 * st);
    for ((sb, db), tb) in src
        .chunks_exact(2 * st)
        .zip(dst.chunks_exact_mut(2 * st))
        .zip(tws)
    {
        let (sl, sh) = sb.split_at(st);
        let (dl, dh) = db.split_at_mut(st);
        for ((((dl, dh), &a), &b), w) in dl
            .iter_mut()
            .zip(dh)
            .zip(sl)
            .zip(sh)
            .zip(tb.chunks_exact(4))
        {
            *dl = w[0] * a + w[b1] * b;
            *dh = w[c1] * a + w[3] * b;
        }
    }
}

/// `butterfly.grad` as lowered: per row, the forward stages saved into `xs` (stages
/// `0..L−1`; the last output is not needed), the gradient pushed back through the
/// transposed stages into `gs` (the last one into `dx`); then per stage, its twiddle
/// gradient summed over rows from the saved input and output gradient.
#[allow(clippy::too_many_arguments)]
fn butterfly_grad(
    x: &[f32],
    tw: &[f32],
    dy: &[f32],
    xs: &mut [f32],
    gs: &mut [f32],
    dx: &mut [f32],
    dtw: &mut [f32],
    n: usize,
) {
    let (h, l) = (n / 2, n.trailing_zeros() as usize);
    for t in 0..T {
        xs[slot(0, t, n)..slot(0, t, n) + n].copy_from_slice(&x[t * n..(t + 1) * n]);
        for s in 0..l - 1 {
            let (before, after) = xs.split_at_mut(slot(s + 1, t, n));
            stage(
                &before[slot(s, t, n)..slot(s, t, n) + n],
                &mut after[..n],
                tw,
                s,
                false,
            );
        }
        gs[slot(l, t, n)..slot(l, t, n) + n].copy_from_slice(&dy[t * n..(t + 1) * n]);
        for s in (0..l).rev() {
            let (before, after) = gs.split_at_mut(slot(s + 1, t, n));
            let dst = if s == 0 {
                &mut dx[t * n..(t + 1) * n]
            } else {
                &mut before[slot(s, t, n)..slot(s, t, n) + n]
            };
            stage(&after[..n], dst, tw, s, true);
        }
    }
    for s in 0..l {
        let st = 1 << s;
        let d = &mut dtw[s * h * 4..(s + 1) * h * 4];
        d.fill(0.0);
        for t in 0..T {
            let xr = &xs[slot(s, t, n)..slot(s, t, n) + n];
            let gr = &gs[slot(s + 1, t, n)..slot(s + 1, t, n) + n];
            let blocks = xr
                .chunks_exact(2 * st)
                .zip(gr.chunks_exact(2 * st))
                .zip(d.chunks_exact_mut(4 * st));
            for ((xb, gb), db) in blocks {
                let (xl, xh) = xb.split_at(st);
                let (gl, gh) = gb.split_at(st);
                let pairs = xl.iter().zip(xh).zip(gl.iter().zip(gh));
                for (((&a, &b), (&ga, &gb)), dj) in pairs.zip(db.chunks_exact_mut(4)) {
                    dj[0] += ga * a;
                    dj[1] += ga * b;
                    dj[2] += gb * a;
                    dj[3] += gb * b;
                }
            }
        }
    }
}

pub fn run_butterfly_grad(n: usize) -> Result<Case, String> {
    let (l, h) = (n.trailing_zeros() as usize, n / 2);
    let tw_ty = format!("f32[1, 1, 1, {l}, {h}, 2, 2]");
    let text = format!(
        "graph @bfg(%x: f32[B, T, {n}], %dy: f32[B, T, {n}]) -> (%dx: f32[B, T, {n}], \
         %dtw: {tw_ty}) where B <= 1, T <= {T} {{\n\
         param @tw: {tw_ty} init normal(0.5) trainable\n\
         %0, %1 = butterfly.grad %x, @tw, %dy {{in = {n}, out = {n}, stride = increasing}} \
         : f32[B, T, {n}], {tw_ty}\n\
         return %0, %1\n}}\n"
    );
    let mut j = jit_train(&graph("bfg", &text)?, 1)?;
    let tw = to_f32(&j.weights["tw"]);
    let (x, dy) = (random(T * n, 17), random(T * n, 18));
    let inputs = [tensor(vec![1, T, n], &x), tensor(vec![1, T, n], &dy)];
    let syms = Syms::batch(1, T);
    let jt = family_time(&mut j.ex, &inputs, syms, "backward.butterfly")?;
    let (mut xs, mut gs) = (vec![0f32; l * T * n], vec![0f32; (l + 1) * T * n]);
    let (mut dx, mut dtw) = (vec![0f32; T * n], vec![0f32; l * h * 4]);
    let lt = time(|| {
        butterfly_grad(
            black_box(&x),
            &tw,
            &dy,
            &mut xs,
            &mut gs,
            &mut dx,
            &mut dtw,
            n,
        )
    });
    let out = j.ex.step(&inputs, syms).map_err(|e| e.to_string())?;
    let err = rel_err(&to_f32(&out[0]), &dx).max(rel_err(&to_f32(&out[1]), &dtw));
    Ok(Case {
        name: "backward.butterfly",
        shape: format!("dx,dtw of [{T},{n}], {l} stages"),
        jit: jt,
        llvm: lt,
        err,
    })
}

/// The gradients of causal attention (`heads` = kv heads, head dim `hd`), as lowered:
/// per (query row, head), the softmax max and sum by an online pass, `Σ p·(dy·v)`, then
/// `dq`, each pass recomputing the scores; the three statistics saved. Then per (key row,
/// head), `dk` and `dv` over the query rows that see it, scores recomputed from the stats.
#[allow(clippy::too_many_arguments)]
fn attention_grad(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dy: &[f32],
    stats: &mut [f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    heads: usize,
    hd: usize,
) {
    let scale = 1.0 / (hd as f32).sqrt();
    // Row `t`, head `h` of a `[T, heads·hd]` operand.
    let row = |t: usize, h: usize| (t * heads + h) * hd..(t * heads + h + 1) * hd;
    for i in 0..T {
        for h in 0..heads {
            let (qr, dyr) = (&q[row(i, h)], &dy[row(i, h)]);
            let mut m = dot4(qr, &k[row(0, h)]) * scale;
            let mut l = 1.0f32;
            for j in 1..=i {
                let s = dot4(qr, &k[row(j, h)]) * scale;
                let mx = m.max(s);
                l = l * (m - mx).exp() + (s - mx).exp();
                m = mx;
            }
            let mut delta = 0.0f32;
            for j in 0..=i {
                let p = (dot4(qr, &k[row(j, h)]) * scale - m).exp() / l;
                delta += p * dot4(dyr, &v[row(j, h)]);
            }
            let r = row(i, h);
            dq[r.clone()].fill(0.0);
            for j in 0..=i {
                let kr = &k[row(j, h)];
                let p = (dot4(qr, kr) * scale - m).exp() / l;
                let g = p * (dot4(dyr, &v[row(j, h)]) - delta) * scale;
                for (o, &kv) in dq[r.clone()].iter_mut().zip(kr) {
                    *o += g * kv;
                }
            }
            stats[(i * heads + h) * 3] = m;
            stats[(i * heads + h) * 3 + 1] = l;
            stats[(i * heads + h) * 3 + 2] = delta;
        }
    }
    for j in 0..T {
        for h in 0..heads {
            let r = row(j, h);
            dk[r.clone()].fill(0.0);
            dv[r.clone()].fill(0.0);
            let (kr, vr) = (&k[r.clone()], &v[r.clone()]);
            for i in j..T {
                let st = &stats[(i * heads + h) * 3..(i * heads + h) * 3 + 3];
                let (qr, dyr) = (&q[row(i, h)], &dy[row(i, h)]);
                let p = (dot4(qr, kr) * scale - st[0]).exp() / st[1];
                let g = p * (dot4(dyr, vr) - st[2]) * scale;
                let (dkr, dvr) = (&mut dk[r.clone()], &mut dv[r.clone()]);
                for (((ok, ov), &qv), &dyv) in dkr.iter_mut().zip(dvr).zip(qr).zip(dyr) {
                    *ok += g * qv;
                    *ov += p * dyv;
                }
            }
        }
    }
}

pub fn run_attention_grad(d: usize, heads: usize) -> Result<Case, String> {
    let act = format!("f32[B, T, {d}]");
    let text = format!(
        "graph @attg(%q: {act}, %k: {act}, %v: {act}, %dy: {act}) -> (%dq: {act}, %dk: {act}, \
         %dv: {act}) where B <= 1, T <= {T} {{\n\
         %0, %1, %2 = causal_attention.grad %q, %k, %v, %dy {{heads = {heads}, \
         kv_heads = {heads}}} : {act}, {act}, {act}\n\
         return %0, %1, %2\n}}\n"
    );
    let mut j = jit_train(&graph("attg", &text)?, 1)?;
    let ins: Vec<Vec<f32>> = (0..4).map(|i| random(T * d, 19 + i)).collect();
    let inputs: Vec<_> = ins.iter().map(|v| tensor(vec![1, T, d], v)).collect();
    let syms = Syms::batch(1, T);
    let jt = family_time(&mut j.ex, &inputs, syms, "backward.attention")?;
    let mut stats = vec![0f32; T * heads * 3];
    let (mut dq, mut dk, mut dv) = (vec![0f32; T * d], vec![0f32; T * d], vec![0f32; T * d]);
    let lt = time(|| {
        attention_grad(
            black_box(&ins[0]),
            &ins[1],
            &ins[2],
            &ins[3],
            &mut stats,
            &mut dq,
            &mut dk,
            &mut dv,
            heads,
            d / heads,
        )
    });
    let out = j.ex.step(&inputs, syms).map_err(|e| e.to_string())?;
    let err = [&dq, &dk, &dv]
        .iter()
        .zip(&out)
        .map(|(want, got)| rel_err(&to_f32(got), want))
        .fold(0.0, f64::max);
    Ok(Case {
        name: "backward.attention",
        shape: format!("T={T}, d={d}, {heads} heads"),
        jit: jt,
        llvm: lt,
        err,
    })
}

/// `rmsnorm.grad` as lowered: per row, `Σx²` and `Σ dy·g·x` (4 lane accumulators each),
/// then `dx`, saving `1/rms`; then the gain gradient in blocks of 16 columns over rows.
fn rmsnorm_grad(
    x: &[f32],
    gain: &[f32],
    dy: &[f32],
    inv: &mut [f32],
    dx: &mut [f32],
    dgain: &mut [f32],
    n: usize,
) {
    for t in 0..T {
        let (xr, dyr) = (&x[t * n..(t + 1) * n], &dy[t * n..(t + 1) * n]);
        let r = 1.0 / (dot4(xr, xr) / n as f32 + 1e-5).sqrt();
        let mut acc = [0f32; 4];
        for ((cd, cg), cx) in dyr
            .chunks_exact(4)
            .zip(gain.chunks_exact(4))
            .zip(xr.chunks_exact(4))
        {
            for l in 0..4 {
                acc[l] += cd[l] * cg[l] * cx[l];
            }
        }
        let c = r * r * (((acc[0] + acc[1]) + (acc[2] + acc[3])) / n as f32);
        let dxr = &mut dx[t * n..(t + 1) * n];
        for (((o, &g), &d), &xv) in dxr.iter_mut().zip(gain).zip(dyr).zip(xr) {
            *o = r * (g * d - xv * c);
        }
        inv[t] = r;
    }
    for (b, dg) in dgain.chunks_exact_mut(16).enumerate() {
        dg.fill(0.0);
        for (t, &r) in inv.iter().enumerate() {
            let o = t * n + b * 16;
            for ((g, &d), &xv) in dg.iter_mut().zip(&dy[o..o + 16]).zip(&x[o..o + 16]) {
                *g += d * xv * r;
            }
        }
    }
}

pub fn run_rmsnorm_grad(n: usize) -> Result<Case, String> {
    let act = format!("f32[B, T, {n}]");
    let text = format!(
        "graph @rmsg(%x: {act}, %dy: {act}) -> (%dx: {act}, %dg: f32[{n}]) \
         where B <= 1, T <= {T} {{\n\
         param @g: f32[{n}] init normal(1.0) trainable\n\
         %0, %1 = rmsnorm.grad %x, @g, %dy {{eps = 1e-5}} : {act}, f32[{n}]\n\
         return %0, %1\n}}\n"
    );
    let mut j = jit_train(&graph("rmsg", &text)?, 1)?;
    let g = to_f32(&j.weights["g"]);
    let (x, dy) = (random(T * n, 23), random(T * n, 24));
    let inputs = [tensor(vec![1, T, n], &x), tensor(vec![1, T, n], &dy)];
    let syms = Syms::batch(1, T);
    let jt = family_time(&mut j.ex, &inputs, syms, "backward.row.rmsnorm")?;
    let mut inv = vec![0f32; T];
    let (mut dx, mut dg) = (vec![0f32; T * n], vec![0f32; n]);
    let lt = time(|| rmsnorm_grad(black_box(&x), &g, &dy, &mut inv, &mut dx, &mut dg, n));
    let out = j.ex.step(&inputs, syms).map_err(|e| e.to_string())?;
    let err = rel_err(&to_f32(&out[0]), &dx).max(rel_err(&to_f32(&out[1]), &dg));
    Ok(Case {
        name: "backward.rmsnorm",
        shape: format!("dx,dg of [{T},{n}]"),
        jit: jt,
        llvm: lt,
        err,
    })
}
