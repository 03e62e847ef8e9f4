use crate::load::{color, load};
use bfly_compiler::Mode;
use bfly_compiler::passes::{check_stop, describe_pipeline, pipeline};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Emit {
    /// The spec's syntax tree (specs only).
    Ast,
    /// The graph IR text (parses back with `bfly inspect FILE.bfir`).
    Ir,
    /// Per-layer parameters and bytes by kind and dtype, against dense f32.
    Summary,
    /// Graphviz drawing of the graph (`dot -Tsvg`).
    Dot,
    /// Error of the spec's quantization against f32, per layer and for the whole model, on a
    /// fixed input (specs, infer program only).
    QuantReport,
    /// Peak activation bytes over the schedule (T = context, or B = batch and T = seq with
    /// --mode train), what is live there, weights apart, and for training what the forward
    /// pass keeps for backward.
    Memory,
    /// The Kernel IR program lowering makes (needs --target): buffers, kernels with their
    /// descriptors, and the shared loop-nest bodies.
    Kernels,
    /// The Cranelift IR of every compiled function (--target host).
    Clif,
    /// The machine code of every compiled function: `--target host`, Cranelift's listing;
    /// `--target aarch64[+dotprod][+fp16]`, each microkernel's disassembly with its
    /// register-tile comment, then Cranelift's aarch64 code for the other sections.
    Asm,
    /// Each aarch64 microkernel's bytes, one file per kernel, into the directory given as
    /// the second argument (or -o), for external tools (objdump, llvm-mca).
    AsmRaw,
}

/// `--target`: `host` (this machine, Cranelift JIT) or `aarch64` with optional features
/// (`aarch64+dotprod+fp16`), emitted on any host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetArg {
    Host,
    Aarch64(bfly_targets::aarch64::CpuFeatures),
}

fn parse_target(s: &str) -> Result<TargetArg, String> {
    if s == "host" {
        return Ok(TargetArg::Host);
    }
    bfly_targets::aarch64::CpuFeatures::parse_target(s)
        .map(TargetArg::Aarch64)
        .map_err(|e| format!("{e}, or `host`"))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// The inference program: tokens i32[T] → logits.
    Infer,
    /// One training step on a batch: tokens, targets i32[B, T] → loss and updated params.
    Train,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Model spec (*.bfly) or graph IR text (*.bfir).
    pub model: PathBuf,
    /// What to print.
    #[arg(long, value_enum, default_value = "ir")]
    pub emit: Emit,
    /// Which program to compile (specs only).
    #[arg(long, value_enum, default_value = "infer")]
    pub mode: ModeArg,
    /// List the mode's passes in order, with what each does, instead of printing a graph.
    #[arg(long)]
    pub passes: bool,
    /// Show the graph after this pass (default: after the last one; `build`: before any).
    #[arg(long, value_name = "PASS")]
    pub after: Option<String>,
    /// With --emit memory: also list the live activation bytes at every step of the schedule.
    #[arg(long)]
    pub per_step: bool,
    /// Lower and compile for this target (`host`, `aarch64`, `aarch64+dotprod+fp16`, …):
    /// `--emit kernels|clif|asm|asm-raw`, and `--emit memory` shows the target's arena plan
    /// instead of the graph-level estimate.
    #[arg(long, value_parser = parse_target, value_name = "TARGET")]
    pub target: Option<TargetArg>,
    /// With `--emit asm-raw`: the directory for the kernel files.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Write to this file (atomically) instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn run(args: &InspectArgs) -> Result<(), String> {
    let loaded = load(&args.model)?;
    let mode = match args.mode {
        ModeArg::Infer => Mode::Infer,
        ModeArg::Train => Mode::Train,
    };
    let graph = match &loaded.spec {
        Some(spec) => {
            let passes = pipeline(mode, spec);
            if args.passes {
                return super::emit(&describe_pipeline(mode, &passes), args.output.as_deref());
            }
            if let Some(after) = &args.after {
                check_stop(&passes, after).map_err(|m| format!("error: {m}"))?;
            }
            bfly_compiler::compile_to_stage(spec, &loaded.file, mode, args.after.as_deref())
                .map_err(|d| bfly_compiler::render_diagnostics(&loaded.file, &d, color()))?
        }
        None if args.passes || args.after.is_some() || matches!(mode, Mode::Train) => {
            return Err(format!(
                "error: {} is graph IR; --mode, --passes and --after compile a model spec (*.bfly)\n  hint: IR text is shown as written",
                loaded.file.name
            ));
        }
        None => loaded.graph,
    };
    // Artifacts hold one program; its mode decides how it lowers.
    let mode = match &loaded.artifact {
        Some(a) if a.mode() == bfly_runtime::artifact::ArtifactMode::Train => Mode::Train,
        Some(_) => Mode::Infer,
        None => mode,
    };
    if args.dir.is_some() && args.emit != Emit::AsmRaw {
        return Err(
            "error: a second path is only taken by --emit asm-raw DIR\n  hint: use -o FILE to write the output to a file".into(),
        );
    }
    if let Some(target) = args.target
        && let Some(text) = target_emit(&graph, mode, target, args)?
    {
        if args.emit == Emit::AsmRaw {
            // The summary goes to stdout: -o, if given, named the directory.
            print!("{text}");
            return Ok(());
        }
        return super::emit(&text, args.output.as_deref());
    }
    let text = match args.emit {
        Emit::Ast => match &loaded.ast {
            Some(ast) => bfly_grammar::dump_spec_ast(ast),
            None => {
                return Err(format!(
                    "error: {} is graph IR, it has no spec AST\n  hint: use --emit ir, summary or dot",
                    loaded.file.name
                ));
            }
        },
        Emit::Ir => bfly_ir::print_graph(&graph),
        Emit::Summary => bfly_ir::summary::render_summary(&graph),
        Emit::Dot => bfly_ir::dot::to_dot(&graph),
        Emit::Memory => {
            use bfly_compiler::liveness::{analyze_memory, bound_bindings, render_memory};
            analyze_memory(&graph, &bound_bindings(&graph))
                .map(|r| render_memory(&r, args.per_step))
                .map_err(|e| format!("error: {e}"))?
        }
        Emit::Kernels | Emit::Clif | Emit::Asm | Emit::AsmRaw => {
            return Err(
                "error: --emit kernels, clif, asm and asm-raw show what a target compiles\n  hint: add --target host (this machine) or --target aarch64+dotprod+fp16"
                    .into(),
            );
        }
        Emit::QuantReport => quant_report(
            loaded.spec.as_ref(),
            &loaded.file,
            mode,
            args.after.is_some(),
        )?,
    };
    super::emit(&text, args.output.as_deref())
}

/// `--emit quant-report`: the infer program before and after `quantize`, evaluated on the
/// reference interpreter (see `bfly_compiler::quant_report`).
fn quant_report(
    spec: Option<&bfly_compiler::ModelSpec>,
    file: &bfly_grammar::SourceFile,
    mode: Mode,
    after: bool,
) -> Result<String, String> {
    let Some(spec) = spec else {
        return Err(format!(
            "error: {} is graph IR; --emit quant-report measures a model spec (*.bfly)",
            file.name
        ));
    };
    if mode == Mode::Train || after {
        return Err(
            "error: --emit quant-report compares the infer program before and after \
                    `quantize`; --mode train and --after do not apply"
                .into(),
        );
    }
    bfly_compiler::quant_report::quant_report(spec, file, true)
        .map(|r| r.render())
        .map_err(|e| format!("error: {e}"))
}

/// `--target`: lower the graph to the Kernel IR and, for code, JIT-compile it. `None` for
/// emits that do not depend on a target.
fn target_emit(
    graph: &bfly_ir::Graph,
    mode: Mode,
    target: TargetArg,
    args: &InspectArgs,
) -> Result<Option<String>, String> {
    use bfly_targets::lower::{LowerMode, lower_graph};
    let emit = args.emit;
    if !matches!(
        emit,
        Emit::Kernels | Emit::Clif | Emit::Asm | Emit::AsmRaw | Emit::Memory
    ) {
        return Ok(None);
    }
    let lower_mode = match mode {
        Mode::Train => LowerMode::Training,
        Mode::Infer => LowerMode::Inference {
            context: graph.bound("T").ok_or_else(|| {
                format!(
                    "error: graph @{} has no bound on T (`where T <= N`)",
                    graph.name
                )
            })?,
        },
    };
    let program = lower_graph(graph, lower_mode)
        .map_err(|e| format!("error: lowering @{} failed: {e}", graph.name))?;
    let text = match emit {
        Emit::Kernels => program.print(),
        Emit::Memory => bfly_targets::plan::plan_memory(&program)
            .map(|p| p.render(&program))
            .map_err(|e| format!("error: {e}"))?,
        Emit::Asm | Emit::AsmRaw => match target {
            TargetArg::Aarch64(features) => aarch64_emit(&program, features, args)?,
            TargetArg::Host if emit == Emit::AsmRaw => {
                return Err(
                    "error: --emit asm-raw writes aarch64 microkernels\n  hint: use --target aarch64+dotprod+fp16 (or aarch64 for the baseline variants)".into(),
                );
            }
            TargetArg::Host => host_code(&program, emit)?,
        },
        Emit::Clif => host_code(&program, emit)?,
        _ => return Ok(None),
    };
    Ok(Some(text))
}

/// Cranelift's CLIF or listing of every function, compiled for this machine.
fn host_code(program: &bfly_ir::kernel::KernelProgram, emit: Emit) -> Result<String, String> {
    let jit = bfly_targets::cranelift::HostProgram::compile(program)
        .map_err(|e| format!("error: JIT compilation failed: {e}"))?;
    let mut text = format!(
        "; {} functions, {} bytes of code, compiled in {:.1?}\n",
        jit.num_functions(),
        jit.code_bytes(),
        jit.compile_time()
    );
    for note in jit.notes() {
        text.push_str(&format!("; note: {note}\n"));
    }
    text.push('\n');
    text.push_str(&if emit == Emit::Clif {
        jit.clif_text()
    } else {
        jit.asm_text()
    });
    Ok(text)
}

/// `--target aarch64…`: the microkernel listings and Cranelift's aarch64 code for the rest
/// (`asm`), or the microkernels' bytes written to a directory (`asm-raw`).
fn aarch64_emit(
    program: &bfly_ir::kernel::KernelProgram,
    features: bfly_targets::aarch64::CpuFeatures,
    args: &InspectArgs,
) -> Result<String, String> {
    use bfly_targets::aarch64::Aarch64Plan;
    let plan = Aarch64Plan::emit(program, features);
    if args.emit == Emit::AsmRaw {
        let dir = args.dir.as_ref().or(args.output.as_ref()).ok_or(
            "error: --emit asm-raw needs a directory\n  hint: bfly inspect SPEC --target aarch64+dotprod+fp16 --emit asm-raw DIR",
        )?;
        let paths = plan
            .write_raw(dir)
            .map_err(|e| format!("error: writing {}: {e}", dir.display()))?;
        let mut text = format!("wrote {} microkernels to {}\n", paths.len(), dir.display());
        for (p, m) in paths.iter().zip(&plan.micro) {
            text.push_str(&format!("  {}  {}\n", p.display(), m.micro.name));
        }
        text.push_str(&format!(
            "disassemble one with: aarch64-linux-gnu-objdump -D -b binary -m aarch64 {}\n",
            paths
                .first()
                .map_or("FILE".into(), |p| p.display().to_string())
        ));
        return Ok(text);
    }
    let mut text = plan.listing();
    let micro: std::collections::HashSet<(u32, usize)> =
        plan.micro.iter().map(|m| (m.body.0, m.section)).collect();
    let cross = bfly_targets::cranelift::cross::aarch64_asm(program, features, &|b, s| {
        !micro.contains(&(b.0, s))
    })
    .map_err(|e| format!("error: compiling the other sections for aarch64: {e}"))?;
    text.push_str("\n; Cranelift aarch64 code of the sections without a microkernel\n\n");
    for c in cross {
        let who = plan
            .fallbacks
            .iter()
            .find(|f| f.body == c.body && f.section == c.section)
            .map(|f| format!(" — {} ({})", f.kernel, f.family))
            .unwrap_or_default();
        text.push_str(&format!(
            "; {} section {}{who}\n{}\n",
            c.body, c.section, c.asm
        ));
    }
    Ok(text)
}
