//! Shared helpers of the benches: single-op graphs from IR text, lowered and JIT-compiled
//! into an executor, and a plain `Instant` harness (median of repetitions after warm-up).
//!
//! JIT times are the executor's per-kernel profile summed over the step kernels, so they
//! exclude the f64 ⇄ f32 conversion of inputs and outputs that `Executor::step` does around
//! the kernels (the baselines get their inputs as ready `f32` slices too).

#![allow(dead_code)] // each bench binary uses a different subset

use bfly_grammar::SourceFile;
use bfly_ir::Graph;
use bfly_ir::parse::parse_graph;
use bfly_targets::cranelift::HostProgram;
use bfly_targets::exec::{Executor, Syms};
use bfly_targets::lower::{LowerMode, lower_graph};
use bfly_targets::reference::{Tensor, Weights, init_weights};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Parses graph IR text (errors rendered as text).
pub fn graph(name: &str, text: &str) -> Result<Graph, String> {
    parse_graph(&SourceFile::new(name, text)).map_err(|d| format!("{name}: {d:?}"))
}

/// A graph compiled for the host, with its (seeded) weights.
pub struct Jit {
    pub ex: Executor,
    pub weights: Weights,
    pub compile: Duration,
}

/// Lowers `g` for inference (KV context 64), JIT-compiles it and loads it on `threads`
/// threads (0 = one per core).
pub fn jit(g: &Graph, threads: usize) -> Result<Jit, String> {
    let weights = init_weights(g, 7)?;
    jit_with(g, weights, threads)
}

pub fn jit_with(g: &Graph, weights: Weights, threads: usize) -> Result<Jit, String> {
    jit_lowered(g, weights, LowerMode::Inference { context: 64 }, threads)
}

/// Lowers `g` for training (`[B, T, ..]` activations, backward and optimizer kernels, the
/// twiddle producers in the step), JIT-compiles it and loads it on `threads` threads.
pub fn jit_train(g: &Graph, threads: usize) -> Result<Jit, String> {
    let weights = init_weights(g, 7)?;
    jit_lowered(g, weights, LowerMode::Training, threads)
}

pub fn jit_lowered(
    g: &Graph,
    weights: Weights,
    mode: LowerMode,
    threads: usize,
) -> Result<Jit, String> {
    let program = lower_graph(g, mode).map_err(|e| format!("lowering @{}: {e}", g.name))?;
    if std::env::var_os("BFLY_BENCH_PRINT").is_some() {
        eprintln!("{}", program.print());
    }
    let host = HostProgram::compile(&program).map_err(|e| format!("JIT @{}: {e}", g.name))?;
    let compile = host.compile_time();
    // A `vector for` the JIT could not vectorize is the usual reason for a slow row.
    for note in host.notes() {
        eprintln!("note: @{}: {note}", g.name);
    }
    let ex = Executor::new(Arc::new(program), Arc::new(host), &weights, threads)
        .map_err(|e| format!("loading @{}: {e}", g.name))?;
    Ok(Jit {
        ex,
        weights,
        compile,
    })
}

/// How long to keep repeating one measurement, and its bounds on repetitions.
const BUDGET: Duration = Duration::from_millis(250);
const MIN_REPS: usize = 5;
const MAX_REPS: usize = 200;

/// Median of `f`'s results over repetitions after two warm-up calls.
fn median_of(mut f: impl FnMut() -> Duration) -> Duration {
    f();
    f();
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < MIN_REPS || (start.elapsed() < BUDGET && times.len() < MAX_REPS) {
        times.push(f());
    }
    times.sort();
    times[times.len() / 2]
}

/// Median wall time of `f`.
pub fn time(mut f: impl FnMut()) -> Duration {
    median_of(|| {
        let t = Instant::now();
        f();
        t.elapsed()
    })
}

/// Median kernel time of one executor step (sum of the step kernels' profiled time).
pub fn step_time(ex: &mut Executor, inputs: &[Tensor], syms: Syms) -> Result<Duration, String> {
    timed_step(ex, inputs, syms, None)
}

/// Median time of the step kernels of one family (`KernelKind::family`, e.g.
/// `backward.butterfly`, `layout.pack`) in one executor step: the other kernels of the
/// program run but are not counted. Fails if no step kernel has that family.
pub fn family_time(
    ex: &mut Executor,
    inputs: &[Tensor],
    syms: Syms,
    family: &str,
) -> Result<Duration, String> {
    timed_step(ex, inputs, syms, Some(family))
}

fn timed_step(
    ex: &mut Executor,
    inputs: &[Tensor],
    syms: Syms,
    family: Option<&str>,
) -> Result<Duration, String> {
    ex.set_profiling(true);
    let mut err = None;
    let mut seen = false;
    let d = median_of(|| {
        ex.reset_profile();
        if let Err(e) = ex.step(inputs, syms) {
            err = Some(e.to_string());
        }
        let ns = ex
            .profile()
            .iter()
            .filter(|p| family.is_none_or(|f| p.1 == f))
            .inspect(|_| seen = true)
            .map(|p| p.2)
            .sum();
        Duration::from_nanos(ns)
    });
    ex.set_profiling(false);
    match (err, family) {
        (Some(e), _) => Err(e),
        (None, Some(f)) if !seen => Err(format!("no step kernel of family `{f}`")),
        (None, _) => Ok(d),
    }
}

/// Deterministic values in [-1, 1) (xorshift), so runs are repeatable without a rand crate.
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn tensor(shape: Vec<usize>, data: &[f32]) -> Tensor {
    Tensor::f32(shape, data.iter().map(|&v| f64::from(v)).collect())
}

pub fn to_f32(t: &Tensor) -> Vec<f32> {
    t.floats()
        .map(|v| v.iter().map(|&x| x as f32).collect())
        .unwrap_or_default()
}

/// Largest absolute difference, relative to the largest magnitude of `want`.
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    f64::from(diff / scale)
}

/// Microseconds with one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

pub fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}", a.as_secs_f64() / b.as_secs_f64().max(1e-12))
}

/// The threads "default threads" means: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
