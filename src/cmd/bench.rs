//! `bfly bench`: prefill and decode tokens/s of a model on the JIT, a per-kernel time table
//! and peak memory; `--train` measures training steps instead.

use crate::load::load;
use bfly_runtime::data::TextCorpus;
use bfly_runtime::rng::SplitMix64;
use bfly_runtime::{BackendChoice, Engine, InferenceSession, Trainer};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    /// Artifact (*.bfa) or model spec (*.bfly). Not needed with --layer.
    #[arg(required_unless_present = "layer")]
    pub model: Option<PathBuf>,
    /// Benchmark one layer instead of a model: `butterfly`, `dense` (the JIT's matmul) or
    /// `both` (side by side, with the ratio).
    #[arg(long, value_name = "KIND")]
    pub layer: Option<String>,
    /// With --layer: width n (a power of two, 2..=8192).
    #[arg(long, default_value_t = 2048)]
    pub n: usize,
    /// With --layer: tokens per call.
    #[arg(long, default_value_t = 64)]
    pub tokens: usize,
    /// Prompt tokens per prefill.
    #[arg(long, default_value_t = 32)]
    pub prompt_len: usize,
    /// Tokens decoded after each prefill (one KV-cache step each).
    #[arg(long, default_value_t = 32)]
    pub decode: usize,
    /// Prefill + decode rounds; the first is a warm-up and is not counted.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0, value_parser = super::parse_threads)]
    pub threads: usize,
    /// Measure training steps of a spec (random batches) instead of inference.
    #[arg(long)]
    pub train: bool,
}

/// A line on stdout. Write errors are ignored: `bfly bench M | head` closes the pipe early,
/// which is not worth a panic (`println!` panics on it).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Text on stdout without a newline, errors ignored like [`out!`].
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

fn random_tokens(rng: &mut SplitMix64, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|_| rng.below((vocab as u64).min(256)) as u32)
        .collect()
}

/// Per-kernel table, grouped by family, largest first.
fn kernel_table(engine: &Engine, total_ns: u64) -> String {
    let mut by_family: BTreeMap<String, (u64, u64, usize)> = BTreeMap::new();
    for (_, family, ns, calls) in engine.executor().profile() {
        let e = by_family.entry(family).or_default();
        e.0 += ns;
        e.1 += calls;
        e.2 += 1;
    }
    let mut rows: Vec<_> = by_family.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.0));
    let mut out = format!(
        "{:<28} {:>8} {:>10} {:>12} {:>7}\n",
        "kernel family", "kernels", "calls", "time", "share"
    );
    for (family, (ns, calls, kernels)) in rows {
        out.push_str(&format!(
            "{family:<28} {kernels:>8} {calls:>10} {:>10.3}ms {:>6.1}%\n",
            ns as f64 / 1e6,
            100.0 * ns as f64 / total_ns.max(1) as f64
        ));
    }
    out
}

fn memory_line(engine: &Engine) -> String {
    let plan = engine.executor().plan();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "memory: arena {:.2} MiB (peak of temporaries), state {:.2} MiB (KV cache, folded weights), weights {:.2} MiB; total {:.2} MiB",
        mib(plan.arena_bytes()),
        mib(plan.state_bytes()),
        mib(plan.param_bytes()),
        mib(plan.total_bytes())
    )
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    if let Some(kind) = &args.layer {
        let table = super::bench_layer::run_layer(kind, args.n, args.tokens, args.threads)
            .map_err(|e| {
                if e.starts_with("error:") {
                    e
                } else {
                    format!("error: {e}")
                }
            })?;
        out_raw!("{table}");
        return Ok(());
    }
    let Some(model) = &args.model else {
        return Err("error: give a model (or --layer KIND)".into());
    };
    if args.train {
        return bench_train(model, args);
    }
    let loaded = load(model)?;
    let load_line = loaded.describe_load();
    let seed = loaded.spec_seed.unwrap_or(0);
    let (graph, weights) = super::run::inference_model(loaded, seed)?;
    // Checked before the JIT runs, so a wrong length fails at once.
    let context = graph.bound("T").unwrap_or(0);
    let fits = args
        .prompt_len
        .checked_add(args.decode)
        .is_some_and(|total| total as u64 <= context);
    if args.prompt_len == 0 || !fits {
        return Err(format!(
            "error: --prompt-len {} + --decode {} must be between 1 and the context of {context}",
            args.prompt_len, args.decode,
        ));
    }
    let mut session = InferenceSession::new(graph, weights, BackendChoice::Auto, args.threads)
        .map_err(|e| format!("error: {e}"))?;
    if let Some(r) = session.load_report() {
        out!("loaded {load_line}");
        out!("backend: {}", r.summary());
    }
    let vocab = session.vocab();
    let mut rng = SplitMix64::new(1);
    let (mut prefill_s, mut decode_s) = (0.0f64, 0.0f64);
    let rounds = args.rounds.max(2);
    for round in 0..rounds {
        if round == 1
            && let Some(e) = session.engine_mut()
        {
            e.executor_mut().reset_profile();
            e.executor_mut().set_profiling(true);
        }
        let prompt = random_tokens(&mut rng, args.prompt_len, vocab);
        session.reset();
        let t0 = Instant::now();
        session.feed(&prompt).map_err(|e| format!("error: {e}"))?;
        let t1 = Instant::now();
        for _ in 0..args.decode {
            let t = random_tokens(&mut rng, 1, vocab);
            session.feed(&t).map_err(|e| format!("error: {e}"))?;
        }
        let t2 = Instant::now();
        if round > 0 {
            prefill_s += (t1 - t0).as_secs_f64();
            decode_s += (t2 - t1).as_secs_f64();
        }
    }
    let counted = (rounds - 1) as f64;
    out!(
        "prefill: {:.0} tokens/s ({} tokens in {:.3} ms)",
        args.prompt_len as f64 * counted / prefill_s.max(1e-12),
        args.prompt_len,
        1e3 * prefill_s / counted
    );
    if args.decode > 0 {
        out!(
            "decode:  {:.0} tokens/s ({:.3} ms per token, KV cache)",
            args.decode as f64 * counted / decode_s.max(1e-12),
            1e3 * decode_s / (counted * args.decode as f64)
        );
    }
    if let Some(e) = session.engine_mut() {
        let total: u64 = e.executor().profile().iter().map(|p| p.2).sum();
        out!("\nper-kernel time (profiled rounds; profiling adds a clock read per kernel):");
        out_raw!("{}", kernel_table(e, total));
        out!("\n{}", memory_line(e));
    }
    Ok(())
}

fn bench_train(model: &std::path::Path, args: &BenchArgs) -> Result<(), String> {
    let loaded = load(model)?;
    let Some(spec) = &loaded.spec else {
        return Err("error: --train benchmarks a model spec (*.bfly)".into());
    };
    let setup = super::train::setup_from_spec(spec, &loaded.file, None)?;
    // Random bytes: the speed of a step does not depend on the text.
    let mut rng = SplitMix64::new(5);
    let text: Vec<u8> = (0..65536).map(|_| b'a' + rng.below(26) as u8).collect();
    let corpus = TextCorpus::from_bytes("random letters", text, setup.vocab)
        .map_err(|e| format!("error: {e}"))?;
    let mut trainer = Trainer::new(
        setup.train_graph.clone(),
        None,
        &setup.weights,
        &corpus,
        1,
        args.threads,
    )
    .map_err(|e| format!("error: {e}"))?;
    out!("backend: {}", trainer.load_report().summary());
    trainer.step().map_err(|e| format!("error: {e}"))?;
    let steps = args.rounds.max(1) * 4;
    trainer.engine_mut().executor_mut().set_profiling(true);
    let t0 = Instant::now();
    for _ in 0..steps {
        trainer.step().map_err(|e| format!("error: {e}"))?;
    }
    let s = t0.elapsed().as_secs_f64();
    let tokens = (trainer.batch() * trainer.seq() * steps) as f64;
    out!(
        "train: {:.0} tokens/s ({:.2} ms per step of {}×{} tokens)",
        tokens / s,
        1e3 * s / steps as f64,
        trainer.batch(),
        trainer.seq()
    );
    let e = trainer.engine_mut();
    let total: u64 = e.executor().profile().iter().map(|p| p.2).sum();
    out!("\nper-kernel time:");
    out_raw!("{}", kernel_table(e, total));
    out!("\n{}", memory_line(e));
    Ok(())
}
