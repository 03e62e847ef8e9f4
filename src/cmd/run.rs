use crate::load::load;
use bfly_runtime::{Backend, ByteTokenizer, InferenceSession};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BackendArg {
    /// The f64 Graph-IR interpreter: slow, exact, the oracle.
    Reference,
}

#[derive(Args)]
pub struct RunArgs {
    /// Model spec (*.bfly) or graph IR text (*.bfir).
    pub model: PathBuf,
    /// Prompt text, encoded as bytes.
    #[arg(long)]
    pub prompt: String,
    /// Number of tokens to generate.
    #[arg(short = 'n', long = "tokens", default_value_t = 16)]
    pub n: usize,
    /// Seed of the weight init (default: the spec's `train.seed`, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Which backend executes the graph.
    #[arg(long, value_enum, default_value = "reference")]
    pub backend: BackendArg,
}

pub fn run(args: &RunArgs) -> Result<(), String> {
    let loaded = load(&args.model)?;
    let seed = args.seed.or(loaded.spec_seed).unwrap_or(0);
    let weights = bfly_targets::reference::init_weights(&loaded.graph, seed)
        .map_err(|e| format!("error: {e}"))?;
    let backend = match args.backend {
        BackendArg::Reference => Backend::Reference,
    };
    let session =
        InferenceSession::new(loaded.graph, weights, backend).map_err(|e| format!("error: {e}"))?;
    let tok = ByteTokenizer::new(session.vocab() as u32);
    let prompt = tok
        .encode(&args.prompt)
        .map_err(|e| format!("error: {e}"))?;
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", args.prompt);
    let generated = session
        .generate_greedy(&prompt, args.n, |t| {
            // Stream each token as it is produced; control bytes are shown escaped.
            let _ = write!(out, "{}", tok.display(t));
            let _ = out.flush();
        })
        .map_err(|e| format!("\nerror: {e}"))?;
    let _ = writeln!(out);
    let ids: Vec<String> = generated.iter().map(u32::to_string).collect();
    eprintln!(
        "greedy, seed {seed}, backend reference: [{}]",
        ids.join(", ")
    );
    Ok(())
}
