//! Each JIT kernel kind against the same loop nest written as plain Rust and compiled by
//! LLVM (release), single-threaded. The Rust mirrors the nest the lowering emits (see
//! `bfly inspect FILE --emit kernels --target host`); where the nest has a `vector for`
//! reduction, the Rust keeps 4 lane accumulators (the reassociation the JIT's 4×f32 code
//! does), since LLVM will not reorder a float sum on its own. `exp`, `sin`, `cos` are
//! Rust's `f32` ones (libm).
//!
//! Every kind has a row: the six here, the rest in `kinds/` (forward: monarch, rope, embed,
//! concat; the dib twiddle producer and the twiddle pack; backward: butterfly, attention,
//! rmsnorm; the adamw update). Where the program has other kernels than the one measured
//! (a butterfly fed by the pack, say), only the kernels of the row's family are timed.
//! Backward, optimizer and weight-time kinds are lowered for training (`B = 1`).
//! `BFLY_BENCH_PRINT=1` prints every lowered program to stderr.
//!
//! Run: `cargo bench -p bfly-targets --bench kernels`; words after `--` keep only the rows
//! whose name contains one of them (`-- rope embed concat dib`).

mod common;
mod kinds;

use bfly_targets::exec::Syms;
use common::{graph, jit, random, ratio, rel_err, step_time, tensor, time, to_f32, us};
use std::hint::black_box;
use std::time::Duration;

const T: usize = 64;

/// 4-lane dot product of `a` and `b` (same length, a multiple of 4).
fn dot4(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 4];
    for (ca, cb) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for l in 0..4 {
            acc[l] += ca[l] * cb[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// Matmul `y[T, N] = x[T, K] · w[N, K]ᵀ`: 4 output columns per outer iteration sharing each
/// load of `x`, each with 4 lane accumulators, as lowered.
fn matmul(x: &[f32], w: &[f32], y: &mut [f32], n: usize, k: usize) {
    for j in (0..n).step_by(4) {
        let w0 = &w[j * k..(j + 1) * k];
        let w1 = &w[(j + 1) * k..(j + 2) * k];
        let w2 = &w[(j + 2) * k..(j + 3) * k];
        let w3 = &w[(j + 3) * k..(j + 4) * k];
        for t in 0..T {
            let xr = &x[t * k..(t + 1) * k];
            let mut acc = [[0f32; 4]; 4];
            for i in (0..k).step_by(4) {
                for l in 0..4 {
                    let xv = xr[i + l];
                    acc[0][l] += xv * w0[i + l];
                    acc[1][l] += xv * w1[i + l];
                    acc[2][l] += xv * w2[i + l];
                    acc[3][l] += xv * w3[i + l];
                }
            }
            for (c, a) in acc.iter().enumerate() {
                y[t * n + j + c] = (a[0] + a[1]) + (a[2] + a[3]);
            }
        }
    }
}

/// Butterfly with packed twiddles `packed[(stage·4 + c)·n/2 + j]`, stride doubling per
/// stage (`increasing`), one row at a time.
fn butterfly(x: &[f32], packed: &[f32], y: &mut [f32], n: usize) {
    let h = n / 2;
    for t in 0..T {
        let row = &mut y[t * n..(t + 1) * n];
        row.copy_from_slice(&x[t * n..(t + 1) * n]);
        let mut s = 1;
        let mut stage = 0;
        while s < n {
            let tw = &packed[stage * 4 * h..(stage + 1) * 4 * h];
            // Blocks of 2s elements, pairs (lo, lo + s) inside: no division per pair (the
            // JIT's strides are constants, so it has none either).
            for blk in 0..h / s {
                for o in 0..s {
                    let j = blk * s + o;
                    let lo = blk * 2 * s + o;
                    let (a, b) = (row[lo], row[lo + s]);
                    row[lo] = tw[j] * a + tw[h + j] * b;
                    row[lo + s] = tw[2 * h + j] * a + tw[3 * h + j] * b;
                }
            }
            s *= 2;
            stage += 1;
        }
    }
}

fn rmsnorm(x: &[f32], gain: &[f32], y: &mut [f32], n: usize) {
    for t in 0..T {
        let xr = &x[t * n..(t + 1) * n];
        let r = 1.0 / (dot4(xr, xr) / n as f32 + 1e-5).sqrt();
        for i in 0..n {
            y[t * n + i] = xr[i] * r * gain[i];
        }
    }
}

fn softmax(x: &[f32], y: &mut [f32], n: usize) {
    for t in 0..T {
        let xr = &x[t * n..(t + 1) * n];
        let m = xr.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let yr = &mut y[t * n..(t + 1) * n];
        let mut acc = [0f32; 4];
        for (cy, cx) in yr.chunks_exact_mut(4).zip(xr.chunks_exact(4)) {
            for l in 0..4 {
                cy[l] = (cx[l] - m).exp();
                acc[l] += cy[l];
            }
        }
        let s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for v in yr {
            *v /= s;
        }
    }
}

/// Causal attention at `pos = 0` over `T` tokens: copy k/v into the caches, then per
/// (token, head) scores, softmax and the weighted sum of values, as lowered.
#[allow(clippy::too_many_arguments)]
fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    kc: &mut [f32],
    vc: &mut [f32],
    scores: &mut [f32],
    y: &mut [f32],
    d: usize,
    heads: usize,
) {
    kc[..T * d].copy_from_slice(&k[..T * d]);
    vc[..T * d].copy_from_slice(&v[..T * d]);
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    for i in 0..T * heads {
        let (t, h) = (i / heads, i % heads);
        let len = t + 1;
        let qo = t * d + h * hd;
        let sc = &mut scores[i * T..i * T + len];
        let mut m = f32::NEG_INFINITY;
        for (j, s) in sc.iter_mut().enumerate() {
            *s = dot4(&q[qo..qo + hd], &kc[j * d + h * hd..j * d + (h + 1) * hd]) * scale;
            m = m.max(*s);
        }
        let mut sum = 0.0;
        for s in sc.iter_mut() {
            *s = (*s - m).exp();
            sum += *s;
        }
        let yr = &mut y[qo..qo + hd];
        yr.fill(0.0);
        for (j, s) in sc.iter().enumerate() {
            let p = s / sum;
            let vr = &vc[j * d + h * hd..j * d + (h + 1) * hd];
            for (o, &vv) in yr.iter_mut().zip(vr) {
                *o += p * vv;
            }
        }
    }
}

/// `matmul.grad`: `dx = dy · w` and `dw = dyᵀ · x`, 4 rows of `w` per step, as lowered.
fn matmul_grad(x: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32], dw: &mut [f32], n: usize) {
    let k = n;
    for t in 0..T {
        let dxr = &mut dx[t * k..(t + 1) * k];
        dxr.fill(0.0);
        for j in (0..n).step_by(4) {
            let g = &dy[t * n + j..t * n + j + 4];
            for i in 0..k {
                dxr[i] += g[0] * w[j * k + i]
                    + g[1] * w[(j + 1) * k + i]
                    + g[2] * w[(j + 2) * k + i]
                    + g[3] * w[(j + 3) * k + i];
            }
        }
    }
    dw.fill(0.0);
    for j in (0..n).step_by(4) {
        for t in 0..T {
            let g = &dy[t * n + j..t * n + j + 4];
            let xr = &x[t * k..(t + 1) * k];
            for c in 0..4 {
                let row = &mut dw[(j + c) * k..(j + c + 1) * k];
                for (o, &xv) in row.iter_mut().zip(xr) {
                    *o += g[c] * xv;
                }
            }
        }
    }
}

struct Case {
    name: &'static str,
    shape: String,
    jit: Duration,
    llvm: Duration,
    err: f64,
}

fn one_input(name: &'static str, n: usize, body: &str, params: &str) -> String {
    format!(
        "graph @{name}(%x: f32[T, {n}]) -> (%y: f32[T, {n}]) where T <= {T} {{\n{params}\n\
         %0 = {body} : f32[T, {n}]\nreturn %0\n}}\n"
    )
}

fn run_matmul(n: usize) -> Result<Case, String> {
    let text = one_input(
        "mm",
        n,
        "matmul %x, @w",
        &format!("param @w: f32[{n}, {n}] init normal(0.05) trainable"),
    );
    let mut j = jit(&graph("mm", &text)?, 1)?;
    let w = to_f32(&j.weights["w"]);
    let x = random(T * n, 1);
    let inputs = [tensor(vec![T, n], &x)];
    let jt = step_time(&mut j.ex, &inputs, Syms::tokens(T))?;
    let mut y = vec![0f32; T * n];
    let lt = time(|| matmul(black_box(&x), &w, &mut y, n, n));
    let got = to_f32(
        &j.ex
            .step(&inputs, Syms::tokens(T))
            .map_err(|e| e.to_string())?[0],
    );
    Ok(Case {
        name: "matmul",
        shape: format!("[{T},{n}]·[{n},{n}]ᵀ"),
        jit: jt,
        llvm: lt,
        err: rel_err(&got, &y),
    })
}

fn run_butterfly(n: usize) -> Result<Case, String> {
    let l = n.trailing_zeros() as usize;
    let h = n / 2;
    let text = one_input(
        "bf",
        n,
        &format!("butterfly %x, @tw {{in = {n}, out = {n}, stride = increasing}}"),
        &format!("param @tw: f32[1, 1, 1, {l}, {h}, 2, 2] init normal(0.5) trainable"),
    );
    let mut j = jit(&graph("bf", &text)?, 1)?;
    let tw = to_f32(&j.weights["tw"]);
    // Pack [L, n/2, 2, 2] into [L, 4, n/2], as the load-phase kernel does.
    let mut packed = vec![0f32; l * 4 * h];
    for s in 0..l {
        for i in 0..h {
            for c in 0..4 {
                packed[(s * 4 + c) * h + i] = tw[(s * h + i) * 4 + c];
            }
        }
    }
    let x = random(T * n, 2);
    let inputs = [tensor(vec![T, n], &x)];
    let jt = step_time(&mut j.ex, &inputs, Syms::tokens(T))?;
    let mut y = vec![0f32; T * n];
    let lt = time(|| butterfly(black_box(&x), &packed, &mut y, n));
    let got = to_f32(
        &j.ex
            .step(&inputs, Syms::tokens(T))
            .map_err(|e| e.to_string())?[0],
    );
    Ok(Case {
        name: "butterfly",
        shape: format!("[{T},{n}], {l} stages"),
        jit: jt,
        llvm: lt,
        err: rel_err(&got, &y),
    })
}

fn run_rmsnorm(n: usize) -> Result<Case, String> {
    let text = one_input(
        "rms",
        n,
        "rmsnorm %x, @g {eps = 1e-5}",
        &format!("param @g: f32[{n}] init normal(1.0) trainable"),
    );
    let mut j = jit(&graph("rms", &text)?, 1)?;
    let g = to_f32(&j.weights["g"]);
    let x = random(T * n, 3);
    let inputs = [tensor(vec![T, n], &x)];
    let jt = step_time(&mut j.ex, &inputs, Syms::tokens(T))?;
    let mut y = vec![0f32; T * n];
    let lt = time(|| rmsnorm(black_box(&x), &g, &mut y, n));
    let got = to_f32(
        &j.ex
            .step(&inputs, Syms::tokens(T))
            .map_err(|e| e.to_string())?[0],
    );
    Ok(Case {
        name: "rmsnorm",
        shape: format!("[{T},{n}]"),
        jit: jt,
        llvm: lt,
        err: rel_err(&got, &y),
    })
}

fn run_softmax(n: usize) -> Result<Case, String> {
    let text = one_input("sm", n, "softmax %x", "");
    let mut j = jit(&graph("sm", &text)?, 1)?;
    let x: Vec<f32> = random(T * n, 4).iter().map(|v| v * 8.0).collect();
    let inputs = [tensor(vec![T, n], &x)];
    let jt = step_time(&mut j.ex, &inputs, Syms::tokens(T))?;
    let mut y = vec![0f32; T * n];
    let lt = time(|| softmax(black_box(&x), &mut y, n));
    let got = to_f32(
        &j.ex
            .step(&inputs, Syms::tokens(T))
            .map_err(|e| e.to_string())?[0],
    );
    Ok(Case {
        name: "softmax",
        shape: format!("[{T},{n}]"),
        jit: jt,
        llvm: lt,
        err: rel_err(&got, &y),
    })
}

fn run_attention(d: usize, heads: usize) -> Result<Case, String> {
    let text = format!(
        "graph @att(%q: f32[T, {d}], %k: f32[T, {d}], %v: f32[T, {d}]) -> (%y: f32[T, {d}]) \
         where T <= {T} {{\n\
         %0 = causal_attention %q, %k, %v {{heads = {heads}, kv_heads = {heads}}} : f32[T, {d}]\n\
         return %0\n}}\n"
    );
    let mut j = jit(&graph("att", &text)?, 1)?;
    let (q, k, v) = (random(T * d, 5), random(T * d, 6), random(T * d, 7));
    let inputs = [
        tensor(vec![T, d], &q),
        tensor(vec![T, d], &k),
        tensor(vec![T, d], &v),
    ];
    // Each step appends at pos 0 again: the cache rows are overwritten, not grown.
    let jt = step_time(&mut j.ex, &inputs, Syms::tokens(T))?;
    let (mut kc, mut vc) = (vec![0f32; T * d], vec![0f32; T * d]);
    let mut scores = vec![0f32; T * heads * T];
    let mut y = vec![0f32; T * d];
    let lt = time(|| {
        attention(
            black_box(&q),
            &k,
            &v,
            &mut kc,
            &mut vc,
            &mut scores,
            &mut y,
            d,
            heads,
        )
    });
    let got = to_f32(
        &j.ex
            .step(&inputs, Syms::tokens(T))
            .map_err(|e| e.to_string())?[0],
    );
    Ok(Case {
        name: "causal_attention",
        shape: format!("T={T}, d={d}, {heads} heads"),
        jit: jt,
        llvm: lt,
        err: rel_err(&got, &y),
    })
}

fn run_matmul_grad(n: usize) -> Result<Case, String> {
    let text = format!(
        "graph @mmg(%x: f32[T, {n}], %dy: f32[T, {n}]) -> (%dx: f32[T, {n}], %dw: f32[{n}, {n}]) \
         where T <= {T} {{\n\
         param @w: f32[{n}, {n}] init normal(0.05) trainable\n\
         %0, %1 = matmul.grad %x, @w, %dy : f32[T, {n}], f32[{n}, {n}]\n\
         return %0, %1\n}}\n"
    );
    let mut j = jit(&graph("mmg", &text)?, 1)?;
    let w = to_f32(&j.weights["w"]);
    let (x, dy) = (random(T * n, 8), random(T * n, 9));
    let inputs = [tensor(vec![T, n], &x), tensor(vec![T, n], &dy)];
    let jt = step_time(&mut j.ex, &inputs, Syms::tokens(T))?;
    let (mut dx, mut dw) = (vec![0f32; T * n], vec![0f32; n * n]);
    let lt = time(|| matmul_grad(black_box(&x), &w, &dy, &mut dx, &mut dw, n));
    let out =
        j.ex.step(&inputs, Syms::tokens(T))
            .map_err(|e| e.to_string())?;
    let err = rel_err(&to_f32(&out[0]), &dx).max(rel_err(&to_f32(&out[1]), &dw));
    Ok(Case {
        name: "matmul.grad",
        shape: format!("dx,dw of [{T},{n}]·[{n},{n}]ᵀ"),
        jit: jt,
        llvm: lt,
        err,
    })
}

/// The non-flag command-line words (cargo passes `--bench` itself).
fn row_filters() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect()
}

fn main() {
    println!("kernels: JIT (Cranelift) vs the same loop nest in Rust (LLVM), 1 thread, T={T}");
    println!("times in µs, median after warm-up; err = max |jit − llvm| / max |llvm|");
    println!();
    println!("| kernel | shape | jit µs | llvm µs | jit/llvm | err |");
    println!("|---|---|---:|---:|---:|---:|");
    // Lazy rows, so a filter skips the work of the others.
    type Row = Box<dyn Fn() -> Vec<(&'static str, Result<Case, String>)>>;
    fn one(name: &'static str, f: fn() -> Result<Case, String>) -> (&'static str, Row) {
        (name, Box::new(move || vec![(name, f())]))
    }
    let rows: Vec<(&str, Row)> = vec![
        one("matmul", || run_matmul(512)),
        one("butterfly", || run_butterfly(1024)),
        one("monarch", || kinds::forward::run_monarch(32)),
        one("rmsnorm", || run_rmsnorm(1024)),
        one("softmax", || run_softmax(1024)),
        one("rope", || kinds::forward::run_rope(1024, 16)),
        one("causal_attention", || run_attention(512, 8)),
        one("embed", || kinds::forward::run_embed(4096, 1024)),
        one("layout.concat", || kinds::forward::run_concat(512)),
        (
            "twiddles.dib layout.pack",
            Box::new(|| kinds::twiddles::run_dib_and_pack(1024)),
        ),
        one("matmul.grad", || run_matmul_grad(512)),
        one("backward.butterfly", || {
            kinds::backward::run_butterfly_grad(1024)
        }),
        one("backward.attention", || {
            kinds::backward::run_attention_grad(512, 8)
        }),
        one("backward.rmsnorm", || {
            kinds::backward::run_rmsnorm_grad(1024)
        }),
        one("optimizer.adamw", || kinds::optim::run_adamw(1024, 1024)),
    ];
    let filters = row_filters();
    let cases = rows
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .flat_map(|(_, run)| run());
    for (name, c) in cases {
        match c {
            Ok(c) => println!(
                "| {} | {} | {} | {} | {} | {:.1e} |",
                c.name,
                c.shape,
                us(c.jit),
                us(c.llvm),
                ratio(c.jit, c.llvm),
                c.err
            ),
            Err(e) => println!("| {name} | error: {e} | | | | |"),
        }
    }
}
