//! `bfly run`: generate text from a spec, IR or artifact, streaming tokens to stdout.

use crate::load::{Loaded, load};
use bfly_runtime::sample::{Sampler, SamplerConfig};
use bfly_runtime::{BackendChoice, ByteTokenizer, InferenceSession};
use bfly_targets::reference::Weights;
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BackendArg {
    /// The best JIT this CPU has: aarch64 on aarch64 CPUs, host elsewhere (override with
    /// BFLY_BACKEND=host|aarch64).
    Auto,
    /// Kernels JIT-compiled by Cranelift for this CPU, with a KV cache.
    Host,
    /// NEON/dotprod/fp16 microkernels for the hot kernels, Cranelift for the rest (aarch64
    /// CPUs only; BFLY_AARCH64_FEATURES limits the features used).
    Aarch64,
    /// The f64 Graph-IR interpreter: slow, exact, the oracle (no KV cache).
    Reference,
}

impl BackendArg {
    pub fn choice(self) -> BackendChoice {
        match self {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Host => BackendChoice::Host,
            BackendArg::Aarch64 => BackendChoice::Aarch64,
            BackendArg::Reference => BackendChoice::Reference,
        }
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// Artifact (*.bfa), model spec (*.bfly) or graph IR text (*.bfir).
    pub model: PathBuf,
    /// Prompt text, encoded as bytes.
    #[arg(long)]
    pub prompt: String,
    /// Number of tokens to generate.
    #[arg(short = 'n', long = "tokens", default_value_t = 16)]
    pub n: usize,
    /// Sampling temperature; 0 = greedy (argmax, lowest id on ties).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only among the most likely tokens whose probabilities add up to p.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Seed of the sampler, and of the weight init for specs and IR (default: the spec's
    /// `train.seed`, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Which backend executes the model.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// A LoRA adapter file (from `bfly train` with `trainable = lora`) replacing the
    /// model's adapters; no recompilation.
    #[arg(long, value_name = "ADAPTER")]
    pub lora: Option<PathBuf>,
}

/// The inference graph and weights of what `load` read: an artifact's stored weights (a
/// train artifact's eval graph), or a spec's / IR's seeded init.
pub fn inference_model(loaded: Loaded, seed: u64) -> Result<(bfly_ir::Graph, Weights), String> {
    match loaded.artifact {
        Some(a) => {
            let graph = match a.mode() {
                bfly_runtime::artifact::ArtifactMode::Infer => a.graph().clone(),
                bfly_runtime::artifact::ArtifactMode::Train => a.eval_graph().cloned().ok_or_else(|| {
                    format!(
                        "error: {} is a training artifact without an inference graph\n  hint: recompile it with `bfly compile SPEC --mode train` or compile an inference artifact",
                        a.path().display()
                    )
                })?,
            };
            let all = a.to_reference_weights();
            let weights = graph
                .params()
                .filter_map(|(_, p, _)| all.get(&p.name).map(|t| (p.name.clone(), t.clone())))
                .collect();
            Ok((graph, weights))
        }
        None => {
            let weights = bfly_targets::reference::init_weights(&loaded.graph, seed)
                .map_err(|e| format!("error: {e}"))?;
            Ok((loaded.graph, weights))
        }
    }
}

pub fn run(args: &RunArgs) -> Result<(), String> {
    let loaded = load(&args.model)?;
    let seed = args.seed.or(loaded.spec_seed).unwrap_or(0);
    let (graph, mut weights) = inference_model(loaded, seed)?;
    if let Some(path) = &args.lora {
        let n = bfly_runtime::adapter::apply_adapter(&graph, &mut weights, path)
            .map_err(|e| format!("error: {e}"))?;
        eprintln!("applied {n} adapter tensors from {}", path.display());
    }
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed,
    })
    .map_err(|e| format!("error: {e}"))?;
    let mut session = InferenceSession::new(graph, weights, args.backend.choice(), args.threads)
        .map_err(|e| format!("error: {e}"))?;
    if let Some(r) = session.load_report() {
        eprintln!("loaded on {}", r.summary());
    }
    let tok = ByteTokenizer::new(session.vocab() as u32);
    let prompt = tok
        .encode(&args.prompt)
        .map_err(|e| format!("error: {e}"))?;
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", args.prompt);
    let _ = out.flush();
    let started = std::time::Instant::now();
    let generated = session
        .generate(&prompt, args.n, &mut sampler, |t| {
            // Stream each token as it is produced; control bytes are shown escaped.
            let _ = write!(out, "{}", tok.display(t));
            let _ = out.flush();
        })
        .map_err(|e| format!("\nerror: {e}"))?;
    let _ = writeln!(out);
    let elapsed = started.elapsed();
    let ids: Vec<String> = generated.iter().map(u32::to_string).collect();
    eprintln!(
        "{} tokens in {:.1?} ({:.0} tok/s incl. prefill), backend {}, seed {seed}: [{}]",
        generated.len(),
        elapsed,
        generated.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        session.backend_name(),
        ids.join(", ")
    );
    Ok(())
}
