//! `bfly demo`: the whole pipeline in one command on a fresh machine. Compiles a built-in
//! spec, trains it for about a minute on text that ships inside the binary (this project's
//! own documentation and specs: no download), shows the loss falling, generates a sample and
//! points at `bfly inspect` for the code the JIT emitted.

use super::train::{LoopOptions, setup_from_spec, train_loop, write_outputs};
use bfly_grammar::SourceFile;
use bfly_runtime::data::TextCorpus;
use bfly_runtime::sample::{Sampler, SamplerConfig};
use bfly_runtime::{BackendChoice, ByteTokenizer};
use clap::Args;
use std::path::PathBuf;

const SPEC: &str = include_str!("demo.bfly");

/// The training text: the project's own prose and specs, embedded at build time.
const CORPUS: &[&str] = &[
    include_str!("../../../README.md"),
    include_str!("../../../docs/decisions.md"),
    include_str!("../../../golden/specs/tiny-dib.bfly"),
    include_str!("../../../golden/specs/tiny-lora-dense.bfly"),
    include_str!("../../../golden/specs/mixed.bfly"),
];

#[derive(Args)]
pub struct DemoArgs {
    /// Training time budget in seconds.
    #[arg(long, default_value_t = 60.0, allow_negative_numbers = true)]
    pub seconds: f64,
    /// Output folder (checkpoint, loss plot, trained model artifact).
    #[arg(short, long, default_value = "bfly-demo")]
    pub out: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0, value_parser = crate::cmd::parse_threads)]
    pub threads: usize,
    /// Tokens to generate after training.
    #[arg(short = 'n', long = "tokens", default_value_t = 96)]
    pub n: usize,
}

pub fn run(args: &DemoArgs) -> Result<(), String> {
    super::train::check_seconds(Some(args.seconds))?;
    let file = SourceFile::new("demo.bfly (built in)", SPEC);
    let (spec, _) = bfly_compiler::compile_spec_source(&file)
        .map_err(|d| bfly_compiler::render_diagnostics(&file, &d, false))?;
    eprintln!("== bfly demo: compile, train, generate ==");
    eprintln!(
        "spec: 2-layer byte-level transformer, DIB butterfly projections (see `bfly demo --help`)"
    );
    let setup = setup_from_spec(&spec, &file, None)?;
    let text = CORPUS.join("\n\n");
    let corpus = TextCorpus::from_bytes("built-in corpus", text.into_bytes(), setup.vocab)
        .map_err(|e| format!("error: {e}"))?;
    eprintln!(
        "corpus: {} bytes of this repository's docs and specs (last 10% held out)",
        corpus.len()
    );
    let opts = LoopOptions {
        steps: u64::MAX,
        seconds: Some(args.seconds),
        val_every: 50,
        val_batches: 2,
        checkpoint_every: 500,
        out: args.out.clone(),
        threads: args.threads,
        resume: None,
    };
    let (trainer, _) = train_loop(&setup, &corpus, &opts)?;
    let hist = trainer.history();
    let first = hist.first().map_or(f32::NAN, |p| p.train);
    let vals: Vec<(u64, f32)> = hist
        .iter()
        .filter_map(|p| p.val.map(|v| (p.step, v)))
        .collect();
    eprintln!(
        "loss {:.3} → {:.3} over {} steps; validation: {}",
        first,
        hist.last().map_or(f32::NAN, |p| p.train),
        trainer.steps_done(),
        vals.iter()
            .step_by((vals.len() / 6).max(1))
            .map(|(s, v)| format!("{v:.2}@{s}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    write_outputs(&trainer, &setup, &args.out)?;
    let mut session = trainer
        .inference_session(BackendChoice::Auto)
        .map_err(|e| format!("error: {e}"))?;
    let tok = ByteTokenizer::new(setup.vocab);
    let prompt_text = "The compiler ";
    let prompt = tok.encode(prompt_text).map_err(|e| format!("error: {e}"))?;
    let n = args.n.min(session.context().saturating_sub(prompt.len()));
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: 0.8,
        top_k: Some(40),
        top_p: None,
        seed: 7,
    })
    .map_err(|e| format!("error: {e}"))?;
    eprintln!(
        "\nsample (temperature 0.8, top-k 40, KV cache on {}):",
        session.backend_name()
    );
    let mut out = super::run::TokenStream::new(std::io::stdout().lock());
    out.text(prompt_text);
    session
        .generate(&prompt, n, &mut sampler, |t| out.token(&tok, t))
        .map_err(|e| format!("\nerror: {e}"))?;
    out.text("\n");
    let model = args.out.join("model.bfa");
    eprintln!(
        "\nnext:\n  bfly run {m} --prompt \"The \" -n 64 --temperature 0.8\n  bfly inspect {m} --emit kernels     # the kernel program\n  bfly inspect {m} --emit asm --target host   # the machine code the JIT emitted\n  bfly inspect {m} --emit asm --target aarch64+dotprod+fp16   # the NEON code a phone runs\n  open {plot}   # the loss curve",
        m = model.display(),
        plot = args.out.join("loss.svg").display()
    );
    Ok(())
}
