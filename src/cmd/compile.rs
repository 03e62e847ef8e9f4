//! `bfly compile`: spec → optimized graph → `.bfa` artifact (weights + graph + spec).

use crate::load::{color, load};
use bfly_compiler::Mode;
use bfly_compiler::spec::{DenseQuant, QuantizeConfig, TwiddleQuant};
use bfly_grammar::{Span, Spanned};
use bfly_runtime::artifact::{ArtifactMode, ArtifactParts, write_artifact};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum QuantArg {
    /// Everything f32 (drops the spec's `quantize` section).
    None,
    /// Dense and monarch weights int8 (SDOT GEMM); twiddles f32.
    Int8,
    /// Dense weights and twiddles fp16.
    Fp16,
    /// Dense int8, twiddles fp16.
    Mixed,
}

#[derive(Args)]
pub struct CompileArgs {
    /// Model spec (*.bfly).
    pub spec: PathBuf,
    /// Weights to import (safetensors; names are the spec's param names, see
    /// `bfly inspect SPEC --emit ir`). Default: the spec's seeded random init.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// With --weights: params missing from the file keep their seeded init instead of being
    /// an error.
    #[arg(long, requires = "weights")]
    pub partial: bool,
    /// Which program the artifact holds.
    #[arg(long, value_enum, default_value = "infer")]
    pub mode: super::inspect::ModeArg,
    /// Override the spec's `quantize` section (inference only).
    #[arg(long, value_enum)]
    pub quant: Option<QuantArg>,
    /// Seed of the random init (default: the spec's `train.seed`, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The artifact to write (atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// The spec's quantize section with `--quant` applied; `keep` stays the spec's (or
/// `embed`/`head`, whose int8 error dominates a small model's).
fn quant_override(spec: &Option<QuantizeConfig>, q: QuantArg) -> Option<QuantizeConfig> {
    let (dense, butterfly) = match q {
        QuantArg::None => return None,
        QuantArg::Int8 => (DenseQuant::Int8, TwiddleQuant::None),
        QuantArg::Fp16 => (DenseQuant::F16, TwiddleQuant::F16),
        QuantArg::Mixed => (DenseQuant::Int8, TwiddleQuant::F16),
    };
    let keep = match spec {
        Some(s) => s.keep.clone(),
        None => ["embed", "head"]
            .map(|k| Spanned::new(k.to_string(), Span::default()))
            .to_vec(),
    };
    Some(QuantizeConfig {
        keyword: Span::default(),
        dense: Spanned::new(dense, Span::default()),
        butterfly: Spanned::new(butterfly, Span::default()),
        keep,
        rotate: spec.as_ref().and_then(|s| s.rotate.clone()),
    })
}

/// The inference program of `spec` without quantization: what a training run validates with
/// and what its trained weights are written as (`model.bfa`), before any quantization.
pub fn f32_inference_graph(
    spec: &bfly_compiler::ModelSpec,
    file: &bfly_grammar::SourceFile,
) -> Result<bfly_ir::Graph, String> {
    let mut f32_spec = spec.clone();
    f32_spec.quantize = None;
    bfly_compiler::compile_to_stage(&f32_spec, file, Mode::Infer, None)
        .map_err(|d| bfly_compiler::render_diagnostics(file, &d, color()))
}

/// The artifact must not replace one of the command's own inputs (`-o` pointing at the spec
/// or the weights would destroy them).
fn check_output_is_not_an_input(args: &CompileArgs) -> Result<(), String> {
    let Ok(out) = args.output.canonicalize() else {
        return Ok(()); // does not exist yet
    };
    let inputs = std::iter::once(&args.spec).chain(args.weights.as_ref());
    for input in inputs {
        if input.canonicalize().is_ok_and(|i| i == out) {
            return Err(format!(
                "error: -o {} is an input of this command; writing the artifact there would destroy it\n  hint: name the artifact *.bfa, e.g. -o model.bfa",
                args.output.display()
            ));
        }
    }
    Ok(())
}

pub fn run(args: &CompileArgs) -> Result<(), String> {
    check_output_is_not_an_input(args)?;
    let loaded = load(&args.spec)?;
    let Some(mut spec) = loaded.spec.clone() else {
        return Err(format!(
            "error: {} is graph IR; `bfly compile` takes a model spec (*.bfly)\n  hint: the spec carries the tokenizer, training and quantization settings an artifact needs",
            loaded.file.name
        ));
    };
    let (mode, artifact_mode) = match args.mode {
        super::inspect::ModeArg::Infer => (Mode::Infer, ArtifactMode::Infer),
        super::inspect::ModeArg::Train => (Mode::Train, ArtifactMode::Train),
    };
    if let Some(q) = args.quant {
        if matches!(mode, Mode::Train) && !matches!(q, QuantArg::None) {
            return Err(
                "error: --quant applies to inference artifacts; training runs in f32\n  hint: drop --quant or use --mode infer"
                    .into(),
            );
        }
        spec.quantize = quant_override(&spec.quantize, q);
    }
    let started = std::time::Instant::now();
    let graph = bfly_compiler::compile_to_stage(&spec, &loaded.file, mode, None)
        .map_err(|d| bfly_compiler::render_diagnostics(&loaded.file, &d, color()))?;
    // A train artifact also carries the f32 inference graph over the same params: the trainer
    // runs it for validation loss and samples.
    let eval_graph = match mode {
        Mode::Train => Some(f32_inference_graph(&spec, &loaded.file)?),
        Mode::Infer => None,
    };
    let seed = args.seed.or(loaded.spec_seed).unwrap_or(0);
    let init = bfly_targets::reference::init_weights(&graph, seed);
    let weights = match &args.weights {
        None => init.map_err(|e| format!("error: {e}"))?,
        Some(path) => {
            let base = if args.partial {
                Some(init.map_err(|e| format!("error: {e}"))?)
            } else {
                None
            };
            bfly_compiler::artifact::import_weights(&graph, path, base.as_ref())
                .map_err(|e| format!("error: {e}"))?
        }
    };
    let tensors = bfly_runtime::artifact::reference_weights_to_host(&graph, &weights)
        .map_err(|e| format!("error: {e}"))?;
    let vocab = u32::try_from(spec.model.vocab.node).map_err(|_| "error: vocab too large")?;
    let spec_name = args
        .spec
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    write_artifact(
        &args.output,
        &ArtifactParts {
            graph: &graph,
            mode: artifact_mode,
            spec_source: &loaded.file.text,
            spec_name: &spec_name,
            vocab,
            tensors: &tensors,
            eval_graph: eval_graph.as_ref(),
        },
    )
    .map_err(|e| format!("error: {e}"))?;
    let bytes: usize = tensors.values().map(|t| t.bytes.len()).sum();
    eprintln!(
        "wrote {} ({} mode, {} tensors, {:.2} MiB of weights) in {:.0?}",
        args.output.display(),
        artifact_mode.name(),
        tensors.len(),
        bytes as f64 / (1024.0 * 1024.0),
        started.elapsed()
    );
    Ok(())
}
