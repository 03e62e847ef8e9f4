//! `bfly bench --layer KIND`: one n→n layer (butterfly or dense matmul) through lowering,
//! the Cranelift JIT and the executor, timed per step. `both` puts the two side by side
//! with the dense / butterfly ratio, the speed-up butterfly factorization buys.
//!
//! Times are the executor's per-kernel profile summed over the step kernels (the median of
//! repetitions after warm-up), so they exclude converting inputs and outputs to and from
//! the f64 tensors `Executor::step` exchanges.

use bfly_grammar::SourceFile;
use bfly_ir::parse::parse_graph;
use bfly_targets::cranelift::HostProgram;
use bfly_targets::exec::{Executor, Syms};
use bfly_targets::lower::{LowerMode, lower_graph};
use bfly_targets::reference::{Tensor, init_weights};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Widest layer accepted (a dense one holds n² f32 weights, materialized as f64 first).
const MAX_WIDTH: usize = 8192;
/// Most tokens per step accepted.
const MAX_TOKENS: usize = 4096;
/// Time spent repeating one measurement, and its minimum repetitions.
const BUDGET: Duration = Duration::from_millis(300);
const MIN_REPS: usize = 5;
const MAX_REPS: usize = 1000;

/// Times one `kind` layer (`butterfly`, `dense` or `both`) of width `n` over `tokens`
/// tokens on `threads` threads (0 = one per core) and returns the printed table.
pub fn run_layer(kind: &str, n: usize, tokens: usize, threads: usize) -> Result<String, String> {
    let kinds: &[&str] = match kind {
        "butterfly" => &["butterfly"],
        "dense" => &["dense"],
        "both" => &["butterfly", "dense"],
        _ => {
            return Err(format!(
                "error: unknown layer kind `{kind}` (expected butterfly, dense or both)"
            ));
        }
    };
    if !(2..=MAX_WIDTH).contains(&n) || !n.is_power_of_two() {
        return Err(format!(
            "error: layer width {n} must be a power of two between 2 and {MAX_WIDTH}"
        ));
    }
    if !(1..=MAX_TOKENS).contains(&tokens) {
        return Err(format!(
            "error: tokens {tokens} must be between 1 and {MAX_TOKENS}"
        ));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "layer n={n}→{n}, T={tokens}, f32, median kernel time per step after warm-up"
    );
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:>12} {:>12} {:>10}",
        "kind", "threads", "time µs", "GFLOP/s", "JIT ms"
    );
    let mut times = Vec::new();
    for &k in kinds {
        let m = measure(k, n, tokens, threads)?;
        let flops = layer_flops(k, n, tokens);
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:>12.1} {:>12.2} {:>10.1}",
            k,
            m.threads,
            m.step.as_secs_f64() * 1e6,
            flops / m.step.as_secs_f64().max(1e-12) / 1e9,
            m.compile.as_secs_f64() * 1e3
        );
        times.push(m.step);
    }
    if let [bf, dense] = times[..] {
        let _ = writeln!(
            out,
            "dense / butterfly: {:.2}×",
            dense.as_secs_f64() / bf.as_secs_f64().max(1e-12)
        );
    }
    Ok(out)
}

/// Multiply-adds counted as 2 flops: a butterfly does log2(n) stages of n/2 2×2 blocks.
fn layer_flops(kind: &str, n: usize, tokens: usize) -> f64 {
    let (n, t) = (n as f64, tokens as f64);
    match kind {
        "butterfly" => t * n.log2() * (n / 2.0) * 8.0,
        _ => t * n * n * 2.0,
    }
}

fn layer_ir(kind: &str, n: usize, tokens: usize) -> String {
    let (param, op) = if kind == "butterfly" {
        let stages = n.trailing_zeros();
        (
            format!(
                "param @tw: f32[1, 1, 1, {stages}, {}, 2, 2] init normal(0.5) trainable",
                n / 2
            ),
            format!("butterfly %x, @tw {{in = {n}, out = {n}, stride = increasing}}"),
        )
    } else {
        (
            format!("param @w: f32[{n}, {n}] init normal(0.02) trainable"),
            "matmul %x, @w".to_string(),
        )
    };
    format!(
        "graph @{kind}(%x: f32[T, {n}]) -> (%y: f32[T, {n}]) where T <= {tokens} {{\n  {param}\n  \
         %0 = {op} : f32[T, {n}]\n  return %0\n}}\n"
    )
}

struct Measured {
    step: Duration,
    compile: Duration,
    threads: usize,
}

fn measure(kind: &str, n: usize, tokens: usize, threads: usize) -> Result<Measured, String> {
    let file = SourceFile::new(format!("{kind}-layer.bfir"), layer_ir(kind, n, tokens));
    let g = parse_graph(&file)
        .map_err(|d| format!("error: the {kind} layer IR does not parse: {d:?}"))?;
    let weights = init_weights(&g, 7).map_err(|e| format!("error: {e}"))?;
    let program = lower_graph(&g, LowerMode::Inference { context: 1 })
        .map_err(|e| format!("error: lowering the {kind} layer: {e}"))?;
    let jit = HostProgram::compile(&program)
        .map_err(|e| format!("error: JIT of the {kind} layer: {e}"))?;
    let compile = jit.compile_time();
    let mut ex = Executor::new(Arc::new(program), Arc::new(jit), &weights, threads)
        .map_err(|e| format!("error: loading the {kind} layer: {e}"))?;
    // A fixed, non-trivial input: values do not change the timing, only keep it honest.
    let x: Vec<f64> = (0..tokens * n)
        .map(|i| ((i * 7919 % 1000) as f64 / 500.0) - 1.0)
        .collect();
    let inputs = [Tensor::f32(vec![tokens, n], x)];
    let syms = Syms::tokens(tokens);
    ex.set_profiling(true);
    let mut one = || -> Result<Duration, String> {
        ex.reset_profile();
        ex.step(&inputs, syms)
            .map_err(|e| format!("error: running the {kind} layer: {e}"))?;
        Ok(Duration::from_nanos(ex.profile().iter().map(|p| p.2).sum()))
    };
    one()?;
    one()?;
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < MIN_REPS || (start.elapsed() < BUDGET && times.len() < MAX_REPS) {
        times.push(one()?);
    }
    times.sort();
    Ok(Measured {
        step: times[times.len() / 2],
        compile,
        threads: ex.threads(),
    })
}
