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
    #[arg(
        long,
        required_unless_present = "prompt_file",
        conflicts_with = "prompt_file"
    )]
    pub prompt: Option<String>,
    /// Read the prompt from a file, byte for byte (any bytes, not only UTF-8).
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// Number of tokens to generate.
    #[arg(short = 'n', long = "tokens", default_value_t = 16)]
    pub n: usize,
    /// Sampling temperature; 0 = greedy (argmax, lowest id on ties).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only among the most likely tokens whose probabilities add up to p.
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Seed of the sampler, and of the weight init for specs and IR (default: the spec's
    /// `train.seed`, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Which backend executes the model.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0, value_parser = super::parse_threads)]
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

/// Writes generated text as it appears: every token is flushed at once, so a reader (a
/// terminal, a pipe into another program) sees it before the next one is computed. Write
/// errors (a closed pipe) are ignored: generation finishes and the summary still goes to
/// stderr.
pub struct TokenStream<W: Write> {
    out: W,
}

impl<W: Write> TokenStream<W> {
    pub fn new(out: W) -> TokenStream<W> {
        TokenStream { out }
    }

    /// Text (the prompt, the final newline), flushed.
    pub fn text(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    /// One token, in its printable form (control bytes escaped), flushed.
    pub fn token(&mut self, tok: &ByteTokenizer, id: u32) {
        self.text(&tok.display(id));
    }
}

/// The prompt's bytes: `--prompt` as UTF-8, or `--prompt-file` as is. Empty is an error
/// (there is nothing to continue).
fn prompt_bytes(args: &RunArgs) -> Result<Vec<u8>, String> {
    let bytes = match (&args.prompt, &args.prompt_file) {
        (_, Some(path)) => std::fs::read(path)
            .map_err(|e| format!("error: cannot read prompt file {}: {e}", path.display()))?,
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, None) => return Err("error: give --prompt TEXT or --prompt-file FILE".into()),
    };
    if bytes.is_empty() {
        return Err(
            "error: the prompt is empty; give at least one character (the model continues it)"
                .into(),
        );
    }
    Ok(bytes)
}

/// The prompt (one token per byte) plus `n` new tokens fit the context: checked before the
/// JIT runs, so a too-long request fails at once (`generate` checks again).
fn check_context(graph: &bfly_ir::Graph, prompt_len: usize, n: usize) -> Result<(), String> {
    let Some(context) = graph.bound("T").and_then(|c| usize::try_from(c).ok()) else {
        return Ok(()); // InferenceSession::new reports the missing bound
    };
    if prompt_len
        .checked_add(n)
        .is_none_or(|total| total > context)
    {
        return Err(format!(
            "error: prompt ({prompt_len} tokens) + {n} new tokens exceed the model's context of {context}; shorten the prompt or lower -n to at most {}",
            context.saturating_sub(prompt_len)
        ));
    }
    Ok(())
}

pub fn run(args: &RunArgs) -> Result<(), String> {
    let prompt_bytes = prompt_bytes(args)?;
    // Sampler options are checked before anything loads (the seed is not known yet).
    SamplerConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: 0,
    }
    .validate()
    .map_err(|e| format!("error: {e}"))?;
    let loaded = load(&args.model)?;
    let load_line = loaded.describe_load();
    let seed = args.seed.or(loaded.spec_seed).unwrap_or(0);
    let (graph, mut weights) = inference_model(loaded, seed)?;
    check_context(&graph, prompt_bytes.len(), args.n)?;
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
    match session.load_report() {
        Some(r) => eprintln!("loaded {load_line}; JIT backend {}", r.summary()),
        None => eprintln!("loaded {load_line}; reference interpreter (no JIT)"),
    }
    let tok = ByteTokenizer::new(session.vocab() as u32);
    let prompt = tok
        .encode_bytes(&prompt_bytes)
        .map_err(|e| format!("error: {e}"))?;
    let mut out = TokenStream::new(std::io::stdout().lock());
    out.text(&String::from_utf8_lossy(&prompt_bytes));
    let started = std::time::Instant::now();
    let generated = session
        .generate(&prompt, args.n, &mut sampler, |t| out.token(&tok, t))
        .map_err(|e| format!("\nerror: {e}"))?;
    out.text("\n");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what reached the reader: the bytes written so far at each flush.
    #[derive(Default)]
    struct Recorder {
        buffered: Vec<u8>,
        flushed: Vec<String>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.buffered.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.flushed
                .push(String::from_utf8_lossy(&self.buffered).into_owned());
            Ok(())
        }
    }

    /// Streaming: every token reaches the reader (is flushed) as soon as it is generated,
    /// not when the process ends.
    #[test]
    fn each_token_is_flushed_as_it_is_generated() {
        let tok = ByteTokenizer::new(256);
        let mut rec = Recorder::default();
        let mut out = TokenStream::new(&mut rec);
        out.text("Hi");
        for id in [b' ', b'y', 0x07] {
            out.token(&tok, u32::from(id));
        }
        out.text("\n");
        assert_eq!(
            rec.flushed,
            ["Hi", "Hi ", "Hi y", "Hi y\\x07", "Hi y\\x07\n"]
        );
    }
}
