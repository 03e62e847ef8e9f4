//! One n→n layer per width and token count: a butterfly layer (canonical twiddles, one
//! block, f32) and a dense matmul layer through lower + Cranelift JIT + executor, against a
//! dense layer computed by the `gemm` crate. Single thread and one thread per core.
//!
//! Run: `cargo bench -p bfly-targets --bench layers`.

mod common;

use bfly_targets::exec::Syms;
use common::{Jit, cores, graph, jit, jit_with, random, ratio, step_time, tensor, time, us};
use gemm::Parallelism;
use std::time::Duration;

const WIDTHS: [usize; 4] = [512, 1024, 2048, 4096];
const TOKENS: [usize; 2] = [1, 64];

fn butterfly_ir(n: usize) -> String {
    let stages = n.trailing_zeros();
    format!(
        "graph @bf(%x: f32[T, {n}]) -> (%y: f32[T, {n}]) where T <= 64 {{\n\
         param @tw: f32[1, 1, 1, {stages}, {h}, 2, 2] init normal(0.5) trainable\n\
         %0 = butterfly %x, @tw {{in = {n}, out = {n}, stride = increasing}} : f32[T, {n}]\n\
         return %0\n}}\n",
        h = n / 2
    )
}

fn dense_ir(n: usize) -> String {
    format!(
        "graph @dense(%x: f32[T, {n}]) -> (%y: f32[T, {n}]) where T <= 64 {{\n\
         param @w: f32[{n}, {n}] init normal(0.02) trainable\n\
         %0 = matmul %x, @w : f32[T, {n}]\n\
         return %0\n}}\n"
    )
}

/// `y[t, n] = Σ_k x[t, k] · w[n, k]` (the IR's `x · wᵀ`) with the `gemm` crate.
#[allow(unsafe_code)]
fn gemm_layer(x: &[f32], w: &[f32], y: &mut [f32], t: usize, n: usize, par: Parallelism) {
    assert!(x.len() >= t * n && w.len() >= n * n && y.len() >= t * n);
    // SAFETY: the assert above keeps every access in bounds: dst is t×n row-major (row
    // stride n), lhs is x as t×n row-major, rhs is wᵀ (n×n, element (k, j) at w[j·n + k]).
    // The three slices are distinct borrows, so dst aliases neither input.
    unsafe {
        gemm::gemm(
            t,
            n,
            n,
            y.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            n as isize,
            w.as_ptr(),
            n as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

struct Row {
    n: usize,
    t: usize,
    /// [1 thread, all cores] for each of butterfly JIT, gemm crate, JIT matmul.
    bf: [Duration; 2],
    gemm: [Duration; 2],
    mm: [Duration; 2],
}

fn jit_pair(text: &str, name: &str) -> Result<[Jit; 2], String> {
    let g = graph(name, text)?;
    let one = jit(&g, 1)?;
    let weights = one.weights.clone();
    let all = jit_with(&g, weights, 0)?;
    Ok([one, all])
}

fn measure(n: usize) -> Result<Vec<Row>, String> {
    let mut bf = jit_pair(&butterfly_ir(n), "butterfly.bfir")?;
    let mut mm = jit_pair(&dense_ir(n), "dense.bfir")?;
    let w: Vec<f32> = common::to_f32(&mm[0].weights["w"]);
    let mut rows = Vec::new();
    for t in TOKENS {
        let x = random(t * n, 3);
        let inputs = [tensor(vec![t, n], &x)];
        let syms = Syms::tokens(t);
        let mut y = vec![0f32; t * n];
        let pars = [Parallelism::None, Parallelism::Rayon(cores())];
        let mut row = Row {
            n,
            t,
            bf: [Duration::ZERO; 2],
            gemm: [Duration::ZERO; 2],
            mm: [Duration::ZERO; 2],
        };
        for i in 0..2 {
            row.bf[i] = step_time(&mut bf[i].ex, &inputs, syms)?;
            row.mm[i] = step_time(&mut mm[i].ex, &inputs, syms)?;
            let par = pars[i];
            row.gemm[i] = time(|| gemm_layer(&x, &w, &mut y, t, n, par));
        }
        // The JIT matmul and the gemm crate compute the same layer: check before reporting.
        let got = common::to_f32(&mm[0].ex.step(&inputs, syms).map_err(|e| e.to_string())?[0]);
        gemm_layer(&x, &w, &mut y, t, n, Parallelism::None);
        let err = common::rel_err(&got, &y);
        if err > 1e-4 {
            return Err(format!(
                "n={n} T={t}: JIT matmul differs from gemm by {err:e}"
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}

fn main() {
    let threads = cores();
    println!("layers: one n→n layer, f32, times in µs (median after warm-up)");
    println!(
        "threads: 1 and {threads} (all cores); bf = butterfly via JIT, gemm = gemm 0.19 dense, mm = JIT dense matmul"
    );
    println!();
    println!("| n | T | thr | bf_jit µs | gemm µs | jit_mm µs | gemm/bf | jit_mm/gemm |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in WIDTHS {
        match measure(n) {
            Ok(rows) => {
                for r in rows {
                    for (i, thr) in [1, threads].into_iter().enumerate() {
                        println!(
                            "| {} | {} | {} | {} | {} | {} | {} | {} |",
                            r.n,
                            r.t,
                            thr,
                            us(r.bf[i]),
                            us(r.gemm[i]),
                            us(r.mm[i]),
                            ratio(r.gemm[i], r.bf[i]),
                            ratio(r.mm[i], r.gemm[i]),
                        );
                    }
                }
            }
            Err(e) => println!("| {n} | - | - | error: {e} | | | | |"),
        }
    }
}
