//! `bfly train`: run the compiled training program on a text file, with validation, a loss
//! plot, atomic checkpoints, bit-exact resume and Ctrl-C saving a checkpoint.

use crate::load::{color, load};
use bfly_compiler::Mode;
use bfly_ir::Graph;
use bfly_runtime::artifact::{
    ArtifactMode, ArtifactParts, reference_weights_to_host, write_artifact,
};
use bfly_runtime::checkpoint::Checkpoint;
use bfly_runtime::data::TextCorpus;
use bfly_runtime::plot::loss_curve_svg;
use bfly_runtime::progress::{DrawMode, ProgressLine};
use bfly_runtime::{Trainer, train};
use bfly_targets::reference::Weights;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct TrainArgs {
    /// Model spec (*.bfly) or training artifact (*.bfa from `bfly compile --mode train`).
    pub model: PathBuf,
    /// Training text (UTF-8). The last 10% is held out for validation.
    #[arg(long)]
    pub data: PathBuf,
    /// Optimizer steps to reach (default: the spec's `train.steps`, else 200). With
    /// --resume, counts from the start of the run, not from the checkpoint.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop after this many seconds even if --steps is not reached.
    #[arg(long, allow_negative_numbers = true)]
    pub seconds: Option<f64>,
    /// Validate (and record the validation loss) every N steps.
    #[arg(long, default_value_t = 50)]
    pub val_every: u64,
    /// Validation batches per validation.
    #[arg(long, default_value_t = 4)]
    pub val_batches: usize,
    /// Save a checkpoint every N steps (and always at the end and on Ctrl-C).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
    /// Output folder: checkpoint.safetensors, loss.svg, model.bfa (and adapter.safetensors
    /// for LoRA-only training).
    #[arg(short, long, default_value = "bfly-train")]
    pub out: PathBuf,
    /// Continue from this checkpoint (same model and data): bit-exact with an uninterrupted
    /// run.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Replace the checkpoint of an earlier run in the output folder (without it, training
    /// into a folder that holds one is refused unless it resumes from that checkpoint).
    #[arg(long)]
    pub overwrite: bool,
    /// Seed of the init and of the batch order (default: the spec's `train.seed`, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads (default: one per core). Results are identical for any count.
    #[arg(long, default_value_t = 0, value_parser = super::parse_threads)]
    pub threads: usize,
}

/// A training program ready to run: graphs, initial weights and where they came from.
pub struct TrainSetup {
    pub train_graph: Graph,
    pub eval_graph: Option<Graph>,
    pub weights: Weights,
    pub spec_source: String,
    pub spec_name: String,
    pub vocab: u32,
    pub default_steps: Option<u64>,
    pub seed: u64,
}

/// Compiles a spec's training and (f32) inference programs and seeds the weights.
pub fn setup_from_spec(
    spec: &bfly_compiler::ModelSpec,
    file: &bfly_grammar::SourceFile,
    seed: Option<u64>,
) -> Result<TrainSetup, String> {
    let render =
        |d: Vec<bfly_grammar::Diagnostic>| bfly_compiler::render_diagnostics(file, &d, color());
    let train_graph =
        bfly_compiler::compile_to_stage(spec, file, Mode::Train, None).map_err(render)?;
    let eval_graph = super::compile::f32_inference_graph(spec, file)?;
    let seed = seed
        .or(spec.train.as_ref().map(|t| t.seed.node))
        .unwrap_or(0);
    let weights = bfly_targets::reference::init_weights(&train_graph, seed)
        .map_err(|e| format!("error: {e}"))?;
    Ok(TrainSetup {
        train_graph,
        eval_graph: Some(eval_graph),
        weights,
        spec_source: file.text.clone(),
        spec_name: file.name.clone(),
        vocab: u32::try_from(spec.model.vocab.node).map_err(|_| "error: vocab too large")?,
        default_steps: spec.train.as_ref().map(|t| t.steps.node),
        seed,
    })
}

fn setup(args: &TrainArgs) -> Result<TrainSetup, String> {
    let loaded = load(&args.model)?;
    if let Some(a) = loaded.artifact {
        if a.mode() != ArtifactMode::Train {
            return Err(format!(
                "error: {} is an inference artifact; training needs the training program\n  hint: `bfly compile SPEC --mode train -o M.bfa`, or train the spec directly",
                a.path().display()
            ));
        }
        return Ok(TrainSetup {
            train_graph: a.graph().clone(),
            eval_graph: a.eval_graph().cloned(),
            weights: a.to_reference_weights(),
            spec_source: a.spec_source().to_string(),
            spec_name: a.spec_name().to_string(),
            vocab: a.vocab(),
            default_steps: None,
            seed: args.seed.unwrap_or(0),
        });
    }
    let Some(spec) = &loaded.spec else {
        return Err(format!(
            "error: {} is graph IR; `bfly train` takes a spec or a training artifact",
            loaded.file.name
        ));
    };
    setup_from_spec(spec, &loaded.file, args.seed)
}

/// How a run ends and what it writes.
pub struct LoopOptions {
    pub steps: u64,
    pub seconds: Option<f64>,
    pub val_every: u64,
    pub val_batches: usize,
    pub checkpoint_every: u64,
    pub out: PathBuf,
    pub threads: usize,
    pub resume: Option<PathBuf>,
}

/// Set by Ctrl-C; the loop saves a checkpoint and stops at the next step boundary.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    // Only one handler per process; a second call (tests running in-process) keeps the first.
    let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
    flag
}

/// A path that exists but is not a folder cannot be the output folder: say so.
fn check_out_dir(out: &Path) -> Result<(), String> {
    if out.exists() && !out.is_dir() {
        return Err(format!(
            "error: output folder {} is a file, not a folder\n  hint: -o names a folder (it receives checkpoint.safetensors, loss.svg and model.bfa)",
            out.display()
        ));
    }
    Ok(())
}

/// Creates the output folder (after [`check_out_dir`]).
fn prepare_out_dir(out: &Path) -> Result<(), String> {
    check_out_dir(out)?;
    std::fs::create_dir_all(out)
        .map_err(|e| format!("error: cannot create output folder {}: {e}", out.display()))
}

/// Reads a checkpoint to resume; one from another model is refused with what differs (the
/// params that are missing, extra or of another shape, or else "the settings").
fn load_matching_checkpoint(path: &Path, train_graph: &Graph) -> Result<Checkpoint, String> {
    let ck = Checkpoint::load_any(path).map_err(|e| format!("error: {e}"))?;
    if ck.fingerprint == train::fingerprint(train_graph) {
        return Ok(ck);
    }
    const SHOWN: usize = 8;
    let diffs = train::checkpoint_differences(train_graph, &ck);
    let detail = if diffs.is_empty() {
        "same params and shapes, but other training settings (optimizer, loss or trainable \
         params)"
            .to_string()
    } else {
        let mut d = format!("{} difference(s):", diffs.len());
        for line in diffs.iter().take(SHOWN) {
            d.push_str(&format!("\n  - {line}"));
        }
        if diffs.len() > SHOWN {
            d.push_str(&format!("\n  - … and {} more", diffs.len() - SHOWN));
        }
        d
    };
    Err(format!(
        "error: checkpoint {} belongs to another model than @{}: {detail}\n  hint: resume with the spec (or artifact) it was trained with, or start without --resume",
        path.display(),
        train_graph.name
    ))
}

fn save_checkpoint(trainer: &Trainer, path: &Path) -> Result<(), String> {
    trainer
        .checkpoint()
        .and_then(|c| c.save(path).map_err(|e| e.to_string()))
        .map_err(|e| format!("error: {e}"))
}

fn write_plot(trainer: &Trainer, path: &Path, title: &str) -> Result<(), String> {
    let train: Vec<(u64, f32)> = trainer
        .history()
        .iter()
        .map(|p| (p.step, p.train))
        .collect();
    let val: Vec<(u64, f32)> = trainer
        .history()
        .iter()
        .filter_map(|p| p.val.map(|v| (p.step, v)))
        .collect();
    bfly_runtime::fsutil::write_atomic(path, loss_curve_svg(&train, &val, title).as_bytes())
        .map_err(|e| format!("error: cannot write {}: {e}", path.display()))
}

/// Runs the training loop; returns the trainer and whether it was interrupted.
pub fn train_loop(
    setup: &TrainSetup,
    corpus: &TextCorpus,
    opts: &LoopOptions,
) -> Result<(Trainer, bool), String> {
    prepare_out_dir(&opts.out)?;
    // Read the checkpoint before the JIT runs: a wrong file fails in milliseconds.
    let resume = match &opts.resume {
        Some(path) => Some((path, load_matching_checkpoint(path, &setup.train_graph)?)),
        None => None,
    };
    let mut trainer = Trainer::new(
        setup.train_graph.clone(),
        setup.eval_graph.clone(),
        &setup.weights,
        corpus,
        setup.seed,
        opts.threads,
    )
    .map_err(|e| format!("error: {e}"))?;
    eprintln!("training program on {}", trainer.load_report().summary());
    if let Some((path, ck)) = resume {
        trainer
            .restore(&ck, corpus)
            .map_err(|e| format!("error: {}: {e}", path.display()))?;
        eprintln!("resumed from {} at step {}", path.display(), ck.step);
    }
    let ckpt = opts.out.join("checkpoint.safetensors");
    let interrupted = interrupt_flag();
    let tokens_per_step = (trainer.batch() * trainer.seq()) as f64;
    // A time-bounded run's total is an estimate that changes every step (set below): start
    // it at 0 and reserve five digits so the bar keeps its place.
    let mut progress = match opts.seconds {
        Some(_) => {
            ProgressLine::new(0, DrawMode::for_stderr(opts.val_every.max(1))).with_count_width(5)
        }
        None => ProgressLine::new(
            opts.steps.min(1_000_000),
            DrawMode::for_stderr(opts.val_every.max(1)),
        ),
    };
    let started = Instant::now();
    let budget = opts.seconds.map(Duration::from_secs_f64);
    let first = trainer.steps_done();
    let mut last_val = None;
    let mut stderr = std::io::stderr();
    let mut was_interrupted = false;
    while trainer.steps_done() < opts.steps {
        if interrupted.load(Ordering::SeqCst) {
            was_interrupted = true;
            break;
        }
        if budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let loss = trainer.step().map_err(|e| format!("error: {e}"))?;
        let step = trainer.steps_done();
        if step % opts.val_every.max(1) == 0 || step == opts.steps {
            last_val = Some(
                trainer
                    .validate(corpus, opts.val_batches)
                    .map_err(|e| format!("error: {e}"))?,
            );
        }
        if step % opts.checkpoint_every.max(1) == 0 {
            save_checkpoint(&trainer, &ckpt)?;
        }
        let elapsed = started.elapsed();
        let done = (step - first) as f64;
        if let Some(b) = budget {
            // Bounded by time: the total is where the current rate ends the budget.
            let rate = done / elapsed.as_secs_f64().max(1e-9);
            let left = (b.as_secs_f64() - elapsed.as_secs_f64()).max(0.0);
            progress.set_total(opts.steps.min(step + (rate * left) as u64));
        }
        progress.update(
            step,
            loss,
            last_val,
            done * tokens_per_step / elapsed.as_secs_f64().max(1e-9),
            elapsed,
        );
        let _ = progress.draw(&mut stderr);
    }
    // A run that stopped between validations (time budget, Ctrl-C) still ends with a
    // validation loss, so the summary and the plot show where it got to.
    let unvalidated = trainer.history().last().is_some_and(|p| p.val.is_none());
    if trainer.steps_done() > first && unvalidated && setup.eval_graph.is_some() {
        let val = trainer
            .validate(corpus, opts.val_batches)
            .map_err(|e| format!("error: {e}"))?;
        progress.set_val(val);
    }
    let _ = progress.finish(&mut stderr);
    save_checkpoint(&trainer, &ckpt)?;
    write_plot(
        &trainer,
        &opts.out.join("loss.svg"),
        &setup.train_graph.name,
    )?;
    if was_interrupted {
        eprintln!(
            "interrupted at step {}: checkpoint saved to {}; continue with --resume {}",
            trainer.steps_done(),
            ckpt.display(),
            ckpt.display()
        );
    }
    Ok((trainer, was_interrupted))
}

/// Writes what a finished run produced: an inference artifact of the trained weights and,
/// for LoRA-only training, the adapter file.
pub fn write_outputs(trainer: &Trainer, setup: &TrainSetup, out: &Path) -> Result<(), String> {
    let Some(eval) = &setup.eval_graph else {
        return Ok(());
    };
    let weights = trainer.eval_weights().map_err(|e| format!("error: {e}"))?;
    let tensors = reference_weights_to_host(eval, &weights).map_err(|e| format!("error: {e}"))?;
    let model = out.join("model.bfa");
    write_artifact(
        &model,
        &ArtifactParts {
            graph: eval,
            mode: ArtifactMode::Infer,
            spec_source: &setup.spec_source,
            spec_name: &setup.spec_name,
            vocab: setup.vocab,
            tensors: &tensors,
            eval_graph: None,
        },
    )
    .map_err(|e| format!("error: {e}"))?;
    eprintln!(
        "wrote {} (inference artifact with the trained weights)",
        model.display()
    );
    let trainable: Vec<String> = setup
        .train_graph
        .params()
        .filter(|(_, p, _)| p.trainable)
        .map(|(_, p, _)| p.name.clone())
        .collect();
    if !trainable.is_empty() && trainable.iter().all(|n| n.contains("lora")) {
        let path = out.join("adapter.safetensors");
        bfly_runtime::adapter::write_adapter(&path, &weights, &trainable)
            .map_err(|e| format!("error: {e}"))?;
        eprintln!(
            "wrote {} ({} adapter tensors; apply with `bfly run MODEL --lora {}`)",
            path.display(),
            trainable.len(),
            path.display()
        );
    }
    Ok(())
}

/// A time budget must be a positive, finite number of seconds.
pub fn check_seconds(seconds: Option<f64>) -> Result<(), String> {
    match seconds {
        Some(s) if !(s.is_finite() && s > 0.0 && s < 1e9) => Err(format!(
            "error: --seconds must be a positive number of seconds, got {s}"
        )),
        _ => Ok(()),
    }
}

/// Checks the options that do not need the model, so mistakes fail before any compilation.
fn check_args(args: &TrainArgs) -> Result<(), String> {
    check_seconds(args.seconds)?;
    check_out_dir(&args.out)?;
    if args.val_batches == 0 {
        return Err(
            "error: --val-batches must be at least 1 (validation loss is the mean over them)"
                .into(),
        );
    }
    if args.steps == Some(0) {
        return Err("error: --steps must be at least 1 (0 would write an untrained model)".into());
    }
    let ckpt = args.out.join("checkpoint.safetensors");
    let resumes_it =
        |r: &PathBuf| matches!((r.canonicalize(), ckpt.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if ckpt.exists() && !args.overwrite && !args.resume.as_ref().is_some_and(resumes_it) {
        return Err(format!(
            "error: {} holds the checkpoint of an earlier run; training would replace it\n  hint: continue it with --resume {}, pick another -o folder, or pass --overwrite",
            args.out.display(),
            ckpt.display()
        ));
    }
    Ok(())
}

pub fn run(args: &TrainArgs) -> Result<(), String> {
    check_args(args)?;
    let setup = setup(args)?;
    let corpus =
        TextCorpus::from_file(&args.data, setup.vocab).map_err(|e| format!("error: {e}"))?;
    let opts = LoopOptions {
        steps: args.steps.or(setup.default_steps).unwrap_or(200),
        seconds: args.seconds,
        val_every: args.val_every,
        val_batches: args.val_batches,
        checkpoint_every: args.checkpoint_every,
        out: args.out.clone(),
        threads: args.threads,
        resume: args.resume.clone(),
    };
    let (trainer, interrupted) = train_loop(&setup, &corpus, &opts)?;
    write_outputs(&trainer, &setup, &args.out)?;
    let last = trainer.history().last();
    eprintln!(
        "step {}: loss {}{}; plot {}",
        trainer.steps_done(),
        last.map_or("-".into(), |p| format!("{:.4}", p.train)),
        last.and_then(|p| p.val)
            .map_or(String::new(), |v| format!(", validation {v:.4}")),
        args.out.join("loss.svg").display()
    );
    if interrupted {
        return Err("stopped by Ctrl-C".into());
    }
    Ok(())
}
